"""Per-step cost of the playground loop against a handwritten PyTorch loop doing the same work.

The work: the MLP example (32 -> 64 -> 10), batch 64, SGD momentum 0.9, one thread, the same in-memory data
and the same per-epoch order; the handwritten loop takes each batch with one index_select per tensor (the fastest
way: `tensor[index]` costs 8 us more a batch of 64, 43 us at 256, which flattered the loop). "Metrics on"
is the example's train loss and top-1 accuracy, computed as often as the example records them
(output.record_every_iters); the handwritten loop computes the same at the same steps. Per-step time is each
loop's fastest epoch of 200 steps, the four loops (playground and handwritten, metrics off and on) taking turns
in one process: the loop as `playground run` builds it (its Recorder and ProgressBar included), whole epochs
(their begin and end included). On a shared 2-core machine this resolves about 0.5%, where differences of whole
runs (a long one less a short one) swung by 3% from run to run. Time to the first optimizer step is measured
from process launch (imports included) for `playground run` and for a handwritten script, the median of
--rounds.

    python benchmarks/loop_overhead.py [--epochs 15] [--rounds 5] [--cpu-time] [--batch 64]
    python benchmarks/loop_overhead.py --profile [--cpu-time]
    python benchmarks/loop_overhead.py --seams [--cpu-time]

--profile times both loops over the same epochs (the best of several, in one process), then runs the loop with
its seams wrapped in timers (event dispatch, the stop vote, the checkpoint rule, recording, batch fetch, the
contexts, to_device, the grad scaler, the lines of train_step and run_iteration themselves) and prints the
microseconds per step of each beside the training work that any loop does.

--seams measures what the loop's overridable seams cost, metrics off: beside the two loops, the same experiment
with its training step written without them (the network and loss called straight from train_step: no blobs_of,
to_device or batch_size, no clip check, the loss's forward without Module.__call__, a plain dict of blobs). What
that saves is what the seams cost; what it leaves (events, recording, the checkpoint rule, the batch fetch,
run_iteration) is the floor of a loop that keeps them. A fourth loop, that one recording a train row per epoch
instead of every 10 iterations, tells what recording costs.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from playground import data, distributed, runner  # noqa: E402
from playground.builtins import synthetic_input  # noqa: E402

torch.set_num_threads(1)
BATCH = 64
clock = time.perf_counter  # per-step figures; --cpu-time: time.process_time


def example_opts(steps: int, metrics: bool, folder: str) -> dict:
    with open(os.path.join(ROOT, "examples", "mlp_synthetic.json")) as f:
        opts = json.load(f)["opts"]
    opts["epoch_iter"].update(num_train_sample_per_epoch=steps * BATCH, batch_per_device=BATCH, num_epochs=1,
                              num_train_iteration_per_test=0)
    opts["model"]["additional_override_py"] = "override_no_test_model_no_checkpoint"
    opts["output"].update(checkpoint_folder=folder, plots=[])
    if metrics:  # the example's train metrics, recorded as often as it says
        opts["output"]["metrics"] = [m for m in opts["output"]["metrics"] if m["is_train"]]
    else:  # no metrics; throughput is still recorded
        opts["output"]["metrics"] = []
    return opts


with open(os.path.join(ROOT, "examples", "mlp_synthetic.json")) as f:
    RECORD_EVERY = json.load(f)["opts"]["output"]["record_every_iters"]


def handwritten_setup(steps: int) -> tuple:
    """What a researcher writes by hand: the same model, data and optimizer."""
    torch.manual_seed(1)
    dataset = synthetic_input.make(steps * BATCH, 32, 10, 3.0, 1, "train")
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.003, momentum=0.9)
    return (*dataset.tensors, model, optimizer)


def handwritten_epoch(features: torch.Tensor, labels: torch.Tensor, model: torch.nn.Module,
                      optimizer: torch.optim.Optimizer, epoch: int, metrics: bool) -> None:
    """One epoch in the same order as the loop's; a batch is one index_select per tensor."""
    order = data.epoch_order(len(features), len(features), 1, epoch)
    log = []
    for step in range(len(features) // BATCH):
        index = order[step * BATCH:(step + 1) * BATCH]
        x, y = features.index_select(0, index), labels.index_select(0, index)
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if metrics and (step + 1) % RECORD_EVERY == 0:  # the same metrics, as often as the example records
            accuracy = (logits.detach().softmax(-1).argmax(-1) == y).float().mean()
            log.append((loss.item(), accuracy.item()))


def build_experiment(steps: int, metrics: bool, folder: str, record_every: int = RECORD_EVERY):
    """The example's experiment as `playground run` builds it, before restoring and running (recording a train
    row every `record_every` iterations, and at each epoch's end)."""
    opts = example_opts(steps, metrics, folder)
    opts["output"]["record_every_iters"] = record_every
    opts, components = runner.prepare(opts)
    info = runner.run_info(opts, folder)
    runner.seed_everything(info.seed)
    return runner.experiment_class(components)(runner.build_parts(components, info), info)


class Timings:
    """Seconds and calls of the functions it wraps, each call's own: less the wrapped calls made within it and their
    timers. What a timer adds is measured in place (a timer around a timer), with the caches as the loop leaves
    them, where it costs twice what it does in a tight loop."""

    def __init__(self):
        self.secs: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.children: dict[str, int] = {}  # wrapped calls made directly within each
        self.inside = [[0.0, 0]]  # per open call: the seconds of the wrapped calls made in it, and their number
        self.probes: list[float] = []

    def timed(self, name: str, function, *args, **kwargs):
        self.inside.append([0.0, 0])
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            secs = time.perf_counter() - started
            inside, children = self.inside.pop()
            self.inside[-1][0] += secs
            self.inside[-1][1] += 1
            self.secs[name] = self.secs.get(name, 0.0) + secs - inside
            self.calls[name] = self.calls.get(name, 0) + 1
            self.children[name] = self.children.get(name, 0) + children
            if name == "timer":
                self.probes.append(secs - inside)

    def wrap(self, name: str, function):
        return lambda *args, **kwargs: self.timed(name, function, *args, **kwargs)

    def timer_secs(self) -> float:
        """What one timer adds to the call around it: the median of the probe's ("timer", wrapped around one timed
        call), which a preemption or a garbage collection now and then does not move."""
        return statistics.median(self.probes) if self.probes else 0.0

    def clear(self) -> None:
        self.secs.clear(), self.calls.clear(), self.children.clear(), self.probes.clear()

    def wrap_context(self, name: str, factory):
        """A context-manager factory whose creation, entry and exit count as `name`."""
        timings = self

        class Timed:
            def __init__(self, *args):
                self.inner = timings.timed(name, factory, *args)

            def __enter__(self):
                timings.timed(name, self.inner.__enter__)
                timings.calls[name] -= 1

            def __exit__(self, *exc):
                timings.timed(name, self.inner.__exit__, *exc)
                timings.calls[name] -= 1
        return Timed

    def wrap_iterator(self, name: str, iterator):
        while True:
            try:
                item = self.timed(name, next, iterator)
            except StopIteration:
                return
            yield item

    def per_step(self, name: str, steps: int) -> tuple[float, float]:
        """Calls and own seconds of `name` per step."""
        own = self.secs.get(name, 0.0) - self.children.get(name, 0) * self.timer_secs()
        return self.calls.get(name, 0) / steps, own / steps


def instrument(exp, timings: Timings) -> list[tuple[str, str]]:
    """Wrap the seams of `exp`'s loop; return the table's rows: (label, timed name)."""
    wrap = timings.wrap
    train_batches = exp.train_batches
    exp.train_batches = lambda *a: timings.wrap_iterator("fetch", wrap("epoch's batch lists", train_batches)(*a))
    exp.call_handlers = wrap("fire", exp.call_handlers)  # every event's calls go through it
    exp.checkpoint_due = wrap("timer", wrap("checkpoint_due", exp.checkpoint_due))  # the probe of timer_secs
    for name in ("record_train", "to_device", "blobs_of", "clip_gradients"):
        setattr(exp, name, wrap(name, getattr(exp, name)))
    exp.no_sync = timings.wrap_context("no_sync", exp.no_sync)  # (autocast is entered in blobs_of, when on)
    for method in ("scale", "step", "update", "unscale_"):
        setattr(exp.scaler, method, wrap("scaler", getattr(exp.scaler, method)))
    exp.forward = wrap("forward", exp.forward)
    exp.model = wrap("network", exp.model)
    if hasattr(exp, "criterion"):
        exp.criterion = wrap("loss", exp.criterion)
    exp.optimizer.step = wrap("optimizer.step", exp.optimizer.step)
    exp.optimizer.zero_grad = wrap("zero_grad", exp.optimizer.zero_grad)
    exp.run_iteration = wrap("run_iteration", exp.run_iteration)
    exp.train_step = wrap("train_step", exp.train_step)
    distributed.agree_stop = wrap("agree_stop", distributed.agree_stop)  # anyexp calls it through the module
    torch.Tensor.backward = wrap("backward", torch.Tensor.backward)
    return [("batch fetch (next batch)", "fetch"), ("batch lists (per epoch)", "epoch's batch lists"),
            ("events (hooks and handlers)", "fire"), ("stop vote (agree_stop)", "agree_stop"),
            ("checkpoint rule", "checkpoint_due"), ("recording (record_train)", "record_train"),
            ("to_device", "to_device"), ("no_sync context", "no_sync"),
            ("grad scaler, less the optimizer step", "scaler"), ("forward, less network and loss", "forward"),
            ("blobs_of's own lines", "blobs_of"), ("clip_gradients", "clip_gradients"),
            ("train_step's own lines", "train_step"),
            ("run_iteration's own lines", "run_iteration")]


def best_per_step(run_epochs: list, steps: int, blocks: int) -> list[float]:
    """Each of `run_epochs`' fastest of `blocks` epochs, per step, taken in turn: the least disturbed by other work
    on a shared machine."""
    best = [float("inf")] * len(run_epochs)
    for epoch in range(blocks):
        for i, run_epoch in enumerate(run_epochs):
            started = clock()
            run_epoch(epoch)
            best[i] = min(best[i], clock() - started)
    return [secs / steps for secs in best]


def steady_state(blocks: int, steps: int = 200) -> dict[str, float]:
    """Seconds per step of the four loops, the fastest of `blocks` epochs each, taken in turn."""
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        for metrics in (False, True):
            tag = "metrics on" if metrics else "metrics off"
            runs[f"handwritten, {tag}"] = functools.partial(handwritten_epoch, *handwritten_setup(steps),
                                                            metrics=metrics)
            runs[f"playground, {tag}"] = build_experiment(steps, metrics, os.path.join(folder, tag)).run_epoch
        return dict(zip(runs, best_per_step(list(runs.values()), steps, blocks)))


def profile(metrics: bool, steps: int = 200, blocks: int = 15) -> None:
    """Per-step time of the loop and of the handwritten loop (the best of `blocks` epochs of `steps` each), then
    where the loop's time goes, timed in place (each piece's best over `blocks` more epochs)."""
    with tempfile.TemporaryDirectory() as folder:
        exp = build_experiment(steps, metrics, folder)
        features, labels, model, optimizer = handwritten_setup(steps)
        hand, loop = best_per_step([lambda e: handwritten_epoch(features, labels, model, optimizer, e, metrics),
                                    exp.run_epoch], steps, blocks)
        print(f"metrics {'on' if metrics else 'off'}: handwritten {hand * 1e6:.1f} us/step, playground "
              f"{loop * 1e6:.1f} us/step: {(loop - hand) * 1e6:+.1f} us, {loop / hand:.3f}x "
              f"(best of {blocks} epochs each, in turn)")
        timings = Timings()
        backward, agree_stop = torch.Tensor.backward, distributed.agree_stop
        rows = instrument(exp, timings)
        best: dict[str, tuple[float, float]] = {}  # per timed name, its least seconds per step over the epochs
        fetch = float("inf")
        try:
            for epoch in range(blocks, 2 * blocks):
                fetch = min(fetch, handwritten_fetch_secs(features, labels, model, optimizer, epoch))
                timings.clear()
                exp.run_epoch(epoch)
                for name in timings.secs:
                    calls, secs = timings.per_step(name, steps)
                    best[name] = min(best.get(name, (calls, secs)), (calls, secs), key=lambda pair: pair[1])
        finally:
            torch.Tensor.backward, distributed.agree_stop = backward, agree_stop
        print(f"  {'where the loop spends it (us per step)':40} {'calls':>6} {'us':>7}")
        for label, name in rows:
            calls, secs = best.get(name, (0.0, 0.0))
            print(f"  {label:40} {calls:6.2f} {secs * 1e6:7.2f}")
        print(f"  {'handwritten: its fetch, timed alike':40} {1:6.2f} {fetch * 1e6:7.2f}")
        work = sum(best[name][1] for name in ("network", "loss", "backward", "optimizer.step", "zero_grad")
                   if name in best)
        print(f"  {'work (network, loss, backward, step)':40} {'':6} {work * 1e6:7.2f}")
        print(f"  (each timer's own cost, {timings.timer_secs() * 1e6:.2f} us here, is subtracted)")


def seamless_train_step(exp, batches):
    """`exp`'s training step without its seams (one batch per step, metrics off): what --seams compares."""
    inputs, labels = batches[0]
    logits = exp.model(inputs)
    blobs = {"loss": exp.criterion.forward(logits, labels), "logits": logits, "label": labels}
    exp.optimizer.zero_grad(set_to_none=True)
    blobs["loss"].backward()
    exp.optimizer.step()
    blobs["learning_rate"] = exp.optimizer.param_groups[0]["lr"]
    return [blobs]


def seams(blocks: int, steps: int = 200) -> None:
    """The loop, the loop with its step's seams taken out, that one recording a row per epoch rather than every
    RECORD_EVERY iterations (what recording costs), and the handwritten loop, taking turns."""
    with tempfile.TemporaryDirectory() as folder:
        runs = {"handwritten": functools.partial(handwritten_epoch, *handwritten_setup(steps), metrics=False),
                "playground": build_experiment(steps, False, os.path.join(folder, "loop")).run_epoch}
        for name, record_every in (("playground, step seams taken out", RECORD_EVERY),
                                   ("  and a row per epoch", steps)):
            seamless = build_experiment(steps, False, os.path.join(folder, name), record_every)
            seamless.train_step = functools.partial(seamless_train_step, seamless)
            runs[name] = seamless.run_epoch
        per_step = dict(zip(runs, best_per_step(list(runs.values()), steps, blocks)))
    for name, secs in per_step.items():
        print(f"{name:34} {secs * 1e6:8.1f} us/step  {secs / per_step['handwritten']:.3f}x")


def handwritten_fetch_secs(features: torch.Tensor, labels: torch.Tensor, model: torch.nn.Module,
                           optimizer: torch.optim.Optimizer, epoch: int) -> float:
    """Seconds per step of the handwritten loop's batch fetch, timed between its training steps (the caches as
    training leaves them), as the loop's seams are."""
    order = data.epoch_order(len(features), len(features), 1, epoch)
    secs, steps = 0.0, len(features) // BATCH
    for step in range(steps):
        started = time.perf_counter()
        index = order[step * BATCH:(step + 1) * BATCH]
        x, y = features.index_select(0, index), labels.index_select(0, index)
        secs += time.perf_counter() - started
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return secs / steps


FIRST_STEP_HANDWRITTEN = """
import time, torch
torch.set_num_threads(1)
from playground.builtins import synthetic_input
dataset = synthetic_input.make(6400, 32, 10, 3.0, 1, "train")
model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.003, momentum=0.9)
x, y = dataset.get_batch(list(range({batch})))
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
    global clock, BATCH
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="launches of each for the time to the first step")
    parser.add_argument("--profile", action="store_true", help="where the loop's time per step goes, instead")
    parser.add_argument("--batch", type=int, default=BATCH, help="batch size of both loops (the example's is 64)")
    parser.add_argument("--seams", action="store_true", help="the loop with and without its step's seams, "
                        "instead (metrics off)")
    parser.add_argument("--epochs", type=int, default=15, help="epochs of 200 steps of each loop, the fastest "
                        "counted (more on a busy machine)")
    parser.add_argument("--cpu-time", action="store_true", help="per-step figures in this process's CPU time, not "
                        "wall time: on a busy shared machine, the time other processes hold the cores then does not "
                        "count (time to the first step stays wall time)")
    args = parser.parse_args()
    BATCH = args.batch
    if args.cpu_time:
        clock = time.process_time
    if args.profile:
        for metrics in (False, True):
            profile(metrics, blocks=args.epochs)
        return
    if args.seams:
        seams(args.epochs)
        return

    results = {name: secs * 1e6 for name, secs in steady_state(args.epochs).items()}
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "exit_handler.py"), "w") as f:
            f.write(FIRST_STEP_HANDLER)
        opts = example_opts(100, True, os.path.join(tmp, "run"))
        opts["output"]["handlers"] = [{"handler_py": "exit_handler.Exit", "kargs": {}}]
        with open(os.path.join(tmp, "opts.json"), "w") as f:
            json.dump({"opts": opts}, f)
        firsts: dict[str, list[float]] = {"first step, handwritten": [], "first step, playground": []}
        for _ in range(args.rounds):
            firsts["first step, handwritten"].append(
                first_step_secs([sys.executable, "-c", FIRST_STEP_HANDWRITTEN.format(batch=BATCH)], tmp))
            shutil.rmtree(os.path.join(tmp, "run"), ignore_errors=True)
            firsts["first step, playground"].append(
                first_step_secs([sys.executable, "-m", "playground", "run", "--parameters-json", "opts.json"], tmp))
    results.update({name: statistics.median(values) for name, values in firsts.items()})
    for name, value in results.items():
        print(f"{name:32} {value:10.2f} {'s' if name.startswith('first') else 'us/step'}")
    print(f"ratio metrics off (playground / handwritten): "
          f"{results['playground, metrics off'] / results['handwritten, metrics off']:.3f}  (goal <= 1.02)")
    print(f"ratio metrics on vs handwritten without metrics: "
          f"{results['playground, metrics on'] / results['handwritten, metrics off']:.3f}  (goal <= 1.10)")
    print(f"ratio metrics on vs handwritten with the same metrics: "
          f"{results['playground, metrics on'] / results['handwritten, metrics on']:.3f}  (goal <= 1.05)")
    print(f"ratio time to first step: "
          f"{results['first step, playground'] / results['first step, handwritten']:.3f}  (goal <= 1.15)")


if __name__ == "__main__":
    main()
