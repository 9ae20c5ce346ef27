"""TorchMetric: any torchmetrics metric as a meter, exact over ranks (synced, never averaged), checked at
--dry-run, and resumed exactly."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import ROOT, write_opts
from playground import cli, distributed
from playground.errors import UsageError
from playground.meters import ComputeLoss, TorchMetric

F1 = {"type": "MulticlassF1Score", "params": {"num_classes": 10, "average": "macro"}, "blob_name": ["softmax", "label"]}
AUROC = {"type": "MulticlassAUROC", "params": {"num_classes": 10}, "blob_name": ["softmax", "label"]}
METRICS = [{"name": "train_f1", "meter_py": "TorchMetric", "meter_kargs": F1, "is_train": True},
           {"name": "test_loss", "meter_py": "ComputeLoss", "meter_kargs": {"blob_name": "loss"}, "is_train": False},
           {"name": "test_f1", "meter_py": "TorchMetric", "meter_kargs": F1, "is_train": False},
           {"name": "test_auroc", "meter_py": "TorchMetric", "meter_kargs": AUROC, "is_train": False}]


def samples(n: int = 90, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(n, classes, generator=generator).softmax(-1), torch.randint(classes, (n,), generator=generator)


def meters(classes: int = 4) -> dict[str, TorchMetric]:
    return {"f1": TorchMetric("MulticlassF1Score", {"num_classes": classes, "average": "macro"}, ["s", "y"]),
            "auroc": TorchMetric("MulticlassAUROC", {"num_classes": classes}, ["s", "y"])}


def one_process_values(scores: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    values = {}
    for name, meter in meters().items():
        meter.update({"s": scores, "y": labels})
        values[name] = meter.compute()
    return values


def _rank(rank: int, store_path: str, slices: list[slice], queue) -> None:
    """One of two ranks: measures its slices of the samples (batches of 16), then compute_all."""
    dist.init_process_group("gloo", store=dist.FileStore(store_path, 2), rank=rank, world_size=2)
    scores, labels = samples()
    exp = type("Exp", (), {"world_size": 2, "device": torch.device("cpu"), "state": type("S", (), {})()})()
    exp.state.reduction_lengths = {}
    results = []
    for part in slices[rank]:
        all_meters = meters()
        for start in range(part.start, part.stop, 16):
            batch = slice(start, min(start + 16, part.stop))
            for meter in all_meters.values():
                meter.update({"s": scores[batch], "y": labels[batch]})
        results.append(distributed.compute_all(all_meters, exp))
    queue.put((rank, results))
    dist.destroy_process_group()


def test_sync_over_two_ranks_equals_one_process_even_when_a_rank_measured_nothing(tmp_path):
    scores, labels = samples()
    # two passes: uneven shares (70/20), then rank 1 measuring nothing at all
    slices = [[slice(0, 70), slice(0, 90)], [slice(70, 90), slice(90, 90)]]
    queue = mp.get_context("spawn").SimpleQueue()
    context = mp.start_processes(_rank, args=(str(tmp_path / "store"), slices, queue), nprocs=2, join=False,
                                 start_method="spawn")
    while not context.join(timeout=60):  # True once both ranks ended well; raises if one failed
        pass
    results = dict(queue.get() for _ in range(2))
    expected = one_process_values(scores, labels)
    for rank in (0, 1):
        for values in results[rank]:
            assert values.keys() == expected.keys()
            for name in expected:
                assert abs(values[name] - expected[name]) <= 1e-6, (rank, name)
    # averaging the two ranks' own values, as meters without sums once were, is not the global value
    first, second = one_process_values(scores[:70], labels[:70]), one_process_values(scores[70:], labels[70:])
    assert all(abs((first[n] + second[n]) / 2 - expected[n]) > 1e-3 for n in expected)


# ---------------------------------------------------------------------------------------------- whole runs


def run_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}


def test_two_cpu_processes_give_the_one_process_values(tiny_opts, tmp_path):
    """Each test pass measures 150 samples: the last global batch of 64 leaves rank 1 nothing."""
    tiny_opts["epoch_iter"].update(num_test_sample=150, num_epochs=1)
    tiny_opts["model_param"]["base_learning_rate"] = 0.0  # the same network in both runs: only the meters differ
    tiny_opts["output"].update(metrics=METRICS, plots=[])
    history = {}
    for processes in (1, 2):
        folder = tmp_path / f"run{processes}"
        tiny_opts["output"]["checkpoint_folder"] = str(folder)
        tiny_opts["distributed"]["num_cpus"] = processes
        tiny_opts["epoch_iter"]["batch_per_device"] = 64 // processes
        done = subprocess.run([sys.executable, "-m", "playground", "run", "--parameters-json",
                               write_opts(tmp_path, tiny_opts, f"opts{processes}.json")], cwd=ROOT, env=run_env(),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        history[processes] = json.loads((folder / "results.json").read_text())["metrics"]
    for name in ("train_f1", "test_loss", "test_f1", "test_auroc"):
        one, two = history[1][name]["values"], history[2][name]["values"]
        assert len(one) == len(two) > 0 and not any(v != v for v in one)
        assert max(abs(a - b) for a, b in zip(one, two)) <= 1e-6, name


def test_exact_resume_with_torchmetric_meters(tiny_opts, tmp_path):
    tiny_opts["output"].update(metrics=METRICS, plots=[])
    tiny_opts["output"]["checkpoint_folder"] = str(tmp_path / "reference")
    assert cli.main(["run", "--parameters-json", write_opts(tmp_path, tiny_opts)]) == 0
    run = tmp_path / "run"
    tiny_opts["output"]["checkpoint_folder"] = str(run)
    tiny_opts["epoch_iter"]["num_epochs"] = 1
    assert cli.main(["run", "--parameters-json", write_opts(tmp_path, tiny_opts)]) == 0
    os.remove(run / "model_final.pt")
    os.remove(run / "status.json")  # make the finished experiment look unfinished: the rerun resumes at epoch 1
    tiny_opts["epoch_iter"]["num_epochs"] = 2
    assert cli.main(["run", "--parameters-json", write_opts(tmp_path, tiny_opts)]) == 0
    resumed, reference = (json.loads((folder / "results.json").read_text())["metrics"]
                          for folder in (run, tmp_path / "reference"))
    for name in ("train_f1", "test_f1", "test_auroc"):
        assert resumed[name] == reference[name], name


# ---------------------------------------------------------------------------------------------- checks


def dry_run(tmp_path, opts, capsys) -> tuple[int, str]:
    code = cli.main(["run", "--parameters-json", write_opts(tmp_path, opts), "--dry-run"])
    return code, capsys.readouterr().err


def test_unknown_type_and_bad_params_are_named_at_dry_run(tiny_opts, tmp_path, capsys):
    tiny_opts["output"].update(plots=[], metrics=[
        {"name": "test_f1", "meter_py": "TorchMetric", "meter_kargs": {**F1, "type": "MulticlasF1Score"},
         "is_train": False},
        {"name": "test_auroc", "meter_py": "TorchMetric",
         "meter_kargs": {**AUROC, "params": {"num_classes": 10, "averge": "macro"}}, "is_train": False}])
    code, err = dry_run(tmp_path, tiny_opts, capsys)
    assert code == 2
    assert ("output.metrics[0].meter_kargs: type 'MulticlasF1Score' is not a torchmetrics metric (closest: "
            "MulticlassF1Score") in err
    assert "output.metrics[1].meter_kargs: params do not build MulticlassAUROC: " in err and "averge" in err
    assert not (tmp_path / "run").exists()


def test_a_metric_of_many_numbers_is_an_error_naming_params():
    meter = TorchMetric("MulticlassF1Score", {"num_classes": 3, "average": "none"}, ["s", "y"])
    meter.update({"s": torch.rand(4, 3), "y": torch.tensor([0, 1, 2, 0])})
    with pytest.raises(UsageError, match=r"MulticlassF1Score gives \(3,\), not one number; set its meter_kargs.params"):
        meter.compute()


def test_nothing_measured_is_nan_and_reset_starts_a_new_pass():
    meter = meters()["f1"]
    assert meter.compute() != meter.compute()  # nan
    scores, labels = samples()
    meter.update({"s": scores[:10], "y": labels[:10]})
    meter.reset()
    meter.update({"s": scores, "y": labels})
    assert meter.compute() == one_process_values(scores, labels)["f1"]


MEDIAN = """
class Median:
    \"\"\"A meter with neither sums nor sync.\"\"\"

    def reset(self):
        pass

    def update(self, blobs):
        pass

    def compute(self):
        return 0.0
"""


def test_a_meter_that_can_not_be_made_exact_over_ranks_is_refused():
    namespace = {}
    exec(MEDIAN, namespace)
    Median = namespace["Median"]
    with pytest.raises(UsageError, match=r"'test_median' can't be computed over 2 processes: a meter needs additive "
                                         r"`sums` or a `sync\(group\)` method"):
        distributed.check_meters({"test_loss": ComputeLoss(), "test_median": Median(), "f1": meters()["f1"]}, 2)
    distributed.check_meters({"test_median": Median()}, 1)  # one process: nothing to merge


def test_a_distributed_run_with_such_a_meter_stops_before_training(tiny_opts, tmp_path):
    (tmp_path / "median_meter.py").write_text(MEDIAN)
    tiny_opts["output"].update(plots=[], metrics=[{"name": "test_median", "meter_py": "median_meter.Median",
                                                   "meter_kargs": {}, "is_train": False}])
    tiny_opts["distributed"]["num_cpus"] = 2
    tiny_opts["epoch_iter"]["batch_per_device"] = 32
    env = {**run_env(), "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    done = subprocess.run([sys.executable, "-m", "playground", "run", "--parameters-json",
                           write_opts(tmp_path, tiny_opts)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "'test_median' can't be computed over 2 processes" in done.stdout + done.stderr
    assert not list((tmp_path / "run").glob("model_*.pt"))


def test_import_playground_does_not_import_torchmetrics():
    code = "import sys, playground, playground.meters, module_map; print('torchmetrics' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=run_env(), capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr
