"""Per-step cost of the playground loop against a handwritten PyTorch loop doing the same work.

The work: the MLP example (32 -> 64 -> 10), batch 64, SGD momentum 0.9, one thread, the same in-memory data
and the same per-epoch order. "Metrics on" is the example's train loss and top-1 accuracy, computed as often as
the example records them (output.record_every_iters); the handwritten loop computes the same at the same steps. Per-step time is (time of a long run - time of a short run) / (extra steps), so
start-up cancels; rounds are interleaved and the median is reported. Time to the first optimizer step is
measured from process launch (imports included) for `playground run` and for a handwritten script.

    python benchmarks/loop_overhead.py [--rounds 7] [--short 200] [--long 1200]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from playground import data, runner  # noqa: E402
from playground.builtins import synthetic_input  # noqa: E402

torch.set_num_threads(1)
BATCH = 64


def example_opts(steps: int, metrics: bool, folder: str) -> dict:
    with open(os.path.join(ROOT, "examples", "mlp_synthetic.json")) as f:
        opts = json.load(f)["opts"]
    opts["epoch_iter"].update(num_train_sample_per_epoch=steps * BATCH, num_epochs=1, num_train_iteration_per_test=0)
    opts["model"]["additional_override_py"] = "override_no_test_model_no_checkpoint"
    opts["output"].update(checkpoint_folder=folder, plots=[])
    if metrics:  # the example's train metrics, recorded as often as it says
        opts["output"]["metrics"] = [m for m in opts["output"]["metrics"] if m["is_train"]]
    else:  # no metrics; throughput is still recorded
        opts["output"]["metrics"] = []
    return opts


with open(os.path.join(ROOT, "examples", "mlp_synthetic.json")) as f:
    RECORD_EVERY = json.load(f)["opts"]["output"]["record_every_iters"]


def playground_loop(steps: int, metrics: bool) -> float:
    with tempfile.TemporaryDirectory() as folder:
        opts, components = runner.prepare(example_opts(steps, metrics, folder))
        os.makedirs(folder, exist_ok=True)
        started = time.perf_counter()
        runner.run(opts, components, folder)
        return time.perf_counter() - started


def handwritten_loop(steps: int, metrics: bool) -> float:
    """What a researcher writes by hand: the same model, data, order and optimizer."""
    started = time.perf_counter()
    torch.manual_seed(1)
    dataset = synthetic_input.make(steps * BATCH, 32, 10, 3.0, 1, "train")
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.003, momentum=0.9)
    order = data.epoch_order(len(dataset), steps * BATCH, 1, 0)
    log = []
    for step in range(steps):
        x, y = dataset.get_batch(order[step * BATCH:(step + 1) * BATCH].tolist())
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if metrics and (step + 1) % RECORD_EVERY == 0:  # the same metrics, as often as the example records
            accuracy = (logits.detach().softmax(-1).argmax(-1) == y).float().mean()
            log.append((loss.item(), accuracy.item()))
    return time.perf_counter() - started


def per_step(loop, short: int, long: int, metrics: bool) -> float:
    return (loop(long, metrics) - loop(short, metrics)) / (long - short)


FIRST_STEP_HANDWRITTEN = """
import time, torch
torch.set_num_threads(1)
from playground.builtins import synthetic_input
dataset = synthetic_input.make(6400, 32, 10, 3.0, 1, "train")
model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.003, momentum=0.9)
x, y = dataset.get_batch(list(range(64)))
loss = torch.nn.functional.cross_entropy(model(x), y)
optimizer.zero_grad(); loss.backward(); optimizer.step()
print(time.time())
"""

FIRST_STEP_HANDLER = """
import os, time
from playground.events import EventHandler

class Exit(EventHandler):
    def on_iteration_end(self, exp):
        print(time.time(), flush=True)
        os._exit(0)
"""


def first_step_secs(command: list[str], cwd: str) -> float:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{cwd}", "OMP_NUM_THREADS": "1"}
    launched = time.time()
    out = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1]) - launched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--short", type=int, default=200)
    parser.add_argument("--long", type=int, default=1200)
    args = parser.parse_args()

    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "exit_handler.py"), "w") as f:
            f.write(FIRST_STEP_HANDLER)
        opts = example_opts(100, True, os.path.join(tmp, "run"))
        opts["output"]["handlers"] = [{"handler_py": "exit_handler.Exit", "kargs": {}}]
        with open(os.path.join(tmp, "opts.json"), "w") as f:
            json.dump({"opts": opts}, f)
        for _ in range(args.rounds):
            for metrics in (False, True):
                tag = "metrics on" if metrics else "metrics off"
                results.setdefault(f"handwritten, {tag}", []).append(
                    per_step(handwritten_loop, args.short, args.long, metrics))
                results.setdefault(f"playground, {tag}", []).append(
                    per_step(playground_loop, args.short, args.long, metrics))
            results.setdefault("first step, handwritten", []).append(
                first_step_secs([sys.executable, "-c", FIRST_STEP_HANDWRITTEN], tmp))
            for name in os.listdir(tmp):
                if name == "run":
                    subprocess.run(["rm", "-rf", os.path.join(tmp, name)], check=True)
            results.setdefault("first step, playground", []).append(
                first_step_secs([sys.executable, "-m", "playground", "run", "--parameters-json", "opts.json"], tmp))

    median = {name: statistics.median(values) for name, values in results.items()}
    for name, value in median.items():
        unit = "s" if name.startswith("first") else "us/step"
        print(f"{name:32} {value if unit == 's' else value * 1e6:10.2f} {unit}")
    print(f"ratio metrics off (playground / handwritten): "
          f"{median['playground, metrics off'] / median['handwritten, metrics off']:.3f}  (goal <= 1.02)")
    print(f"ratio metrics on vs handwritten without metrics: "
          f"{median['playground, metrics on'] / median['handwritten, metrics off']:.3f}  (goal <= 1.10)")
    print(f"ratio metrics on vs handwritten with the same metrics: "
          f"{median['playground, metrics on'] / median['handwritten, metrics on']:.3f}  (goal <= 1.05)")
    print(f"ratio time to first step: "
          f"{median['first step, playground'] / median['first step, handwritten']:.3f}  (goal <= 1.15)")


if __name__ == "__main__":
    main()
