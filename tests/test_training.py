"""A whole run of the MLP example: it learns, and leaves results, plots, opts, log and checkpoints behind."""
from __future__ import annotations

import json
import os
import time

import pytest
import torch

from conftest import ROOT, example_opts, playground, write_opts
from playground import cli, data
from playground.errors import ComponentError
from playground.runner import experiment_class, prepare
from playground.testing import tiny_experiment


def test_mlp_example_learns_and_writes_its_outputs(tiny_opts, tmp_path):
    tiny_opts["epoch_iter"]["num_epochs"] = 3
    assert cli.main(["run", "--parameters-json", write_opts(tmp_path, tiny_opts)]) == 0
    folder = tiny_opts["output"]["checkpoint_folder"]
    files = set(os.listdir(folder))
    assert {"results.json", "opts.json", "log.txt", "model_final.pt", "model_final.pt.sha256",
            "model_checkpoint_epoch2.pt", "model_checkpoint_epoch3.pt",
            "plot0_train_and_test_loss.png", "plot1_accuracy_train_top1_test_top1.png"} <= files
    assert "model_checkpoint_epoch1.pt" not in files  # output.keep_checkpoints: the newest 2, and the final
    results = json.loads(open(os.path.join(folder, "results.json")).read())
    assert results["final"]["test_accuracy_top1"] > 0.5  # 10 classes: chance is 0.1
    assert results["total_batch_size"] == 64 and results["epoch_iterations"] == 10
    loss = results["metrics"]["train_loss"]
    assert len(loss["values"]) == 30 and loss["iterations"] == list(range(1, 31))
    assert loss["epochs"][9] == 1.0 and loss["epochs"][0] == 0.1
    test_loss = results["metrics"]["test_loss"]
    assert test_loss["iterations"] == [5, 10, 15, 20, 25, 30]
    assert {"secs_per_train", "samples_per_sec", "learning_rate"} <= set(results["metrics"])
    assert results["checkpoints"][-1].endswith("model_final.pt")
    saved_opts = json.loads(open(os.path.join(folder, "opts.json")).read())
    assert saved_opts["output"]["record_every_iters"] == 1  # the resolved opts, defaults filled in
    assert "checkpoint" in open(os.path.join(folder, "log.txt")).read()


def test_quick_start_example_learns_steadily(tmp_path):
    """The first plot a new user sees: test accuracy rises (a dip of a few samples aside) and test loss falls."""
    folder = tmp_path / "run"
    assert cli.main(["run", "--parameters-json", str(ROOT / "examples" / "mlp_synthetic.json"),
                     "--set", f"output.checkpoint_folder={folder}"]) == 0
    metrics = json.loads((folder / "results.json").read_text())["metrics"]
    accuracy, loss = metrics["test_accuracy_top1"]["values"], metrics["test_loss"]["values"]
    assert all(later >= max(accuracy[:i]) - 0.01 for i, later in enumerate(accuracy) if i), accuracy
    assert accuracy[-1] >= accuracy[0] and accuracy[-1] > 0.92, accuracy
    assert loss[-1] < loss[0], loss


def test_same_opts_and_seed_give_the_same_weights(tiny_opts, tmp_path):
    finals = []
    for name in ("a", "b"):
        tiny_opts["output"]["checkpoint_folder"] = str(tmp_path / name)
        assert cli.main(["run", "--parameters-json", write_opts(tmp_path, tiny_opts)]) == 0
        finals.append(torch.load(tmp_path / name / "model_final.pt", weights_only=True)["model"])
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])


def test_the_softmax_blob_is_over_the_class_dim_of_per_pixel_scores():
    from playground.builtins.classification_model import Blobs

    logits = torch.randn(2, 3, 4, 5)  # (N, C, H, W): 3 classes per pixel
    assert torch.allclose(Blobs(logits=logits)["softmax"].sum(1), torch.ones(2, 4, 5))
    assert torch.allclose(Blobs(logits=logits[:, :, 0, 0])["softmax"], logits[:, :, 0, 0].softmax(-1))


def test_record_every_iters_thins_train_records(tiny_opts, tmp_path):
    tiny_opts["output"]["record_every_iters"] = 4
    assert cli.main(["run", "--parameters-json", write_opts(tmp_path, tiny_opts)]) == 0
    results = json.loads(open(os.path.join(tiny_opts["output"]["checkpoint_folder"], "results.json")).read())
    assert results["metrics"]["train_loss"]["iterations"] == [4, 8, 10, 12, 16, 20]  # and every epoch's end


def test_override_no_test_model_no_checkpoint(tiny_opts, tmp_path):
    tiny_opts["model"]["additional_override_py"] = "override_no_test_model_no_checkpoint"
    assert cli.main(["run", "--parameters-json", write_opts(tmp_path, tiny_opts)]) == 0
    folder = tiny_opts["output"]["checkpoint_folder"]
    assert not [f for f in os.listdir(folder) if f.endswith(".pt")]
    results = json.loads(open(os.path.join(folder, "results.json")).read())
    assert "test_loss" not in results["metrics"] and "train_loss" in results["metrics"]


def test_override_leaves_the_base_class_untouched(tiny_opts):
    from playground.builtins.classification_model import Experiment

    tiny_opts["model"]["additional_override_py"] = "override_no_test_model_no_checkpoint"
    cls = experiment_class(prepare(tiny_opts)[1])
    assert cls is not Experiment and issubclass(cls, Experiment)
    assert Experiment.run_test is not cls.run_test and "run_test" not in vars(Experiment)


def test_override_defining_an_unknown_method_is_rejected(tiny_opts, tmp_path, monkeypatch):
    (tmp_path / "my_override.py").write_text("def run_tset(self):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    tiny_opts["model"]["additional_override_py"] = "my_override"
    with pytest.raises(ComponentError, match="defines run_tset, which Experiment does not have"):
        experiment_class(prepare(tiny_opts)[1])


def test_epochs_by_loss_example_stops_when_the_loss_is_low(tmp_path):
    opts_path = ROOT / "examples" / "mlp_epochs_by_loss.json"
    result = playground("run", "--parameters-json", str(opts_path),
                        "--set", f"output.checkpoint_folder={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    target = json.loads(opts_path.read_text())["opts"]["model_param"]["target_test_loss"]
    assert results["final"]["test_loss"] < target
    assert results["epochs_completed"] > 1  # the target is not met at once: the override decides when to stop
    assert results["epochs_completed"] < json.loads(opts_path.read_text())["opts"]["epoch_iter"]["num_epochs"]


def test_user_component_by_dotted_path_and_extra_module_map(tiny_opts, tmp_path, monkeypatch):
    (tmp_path / "my_forward.py").write_text(
        "import torch\n\ndef build_network(exp):\n"
        "    return torch.nn.Linear(exp.opts['input']['num_features'], exp.opts['input']['num_classes'])\n")
    (tmp_path / "my_map.py").write_text("MODULE_MAP = {'forward_pass': {'linear': 'my_forward'}}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    tiny_opts["model"]["forward_pass_py"] = "my_forward"
    assert prepare(tiny_opts)[1].modules["forward_pass"].__name__ == "my_forward"
    tiny_opts["model"]["forward_pass_py"] = "linear"
    tiny_opts["model"]["module_maps"] = ["my_map"]
    assert prepare(tiny_opts)[1].modules["forward_pass"].__name__ == "my_forward"
    assert example_opts()["model"]["forward_pass_py"] == "mlp_forward"


def test_a_stop_at_a_scheduled_checkpoint_writes_it_once(tiny_opts, tmp_path, monkeypatch):
    (tmp_path / "stop_at_four.py").write_text(
        "from playground.events import EventHandler\n\n"
        "class StopAtFour(EventHandler):\n"
        "    saved = []\n\n"
        "    def on_iteration_end(self, exp):\n"
        "        if exp.state.global_step == 4:\n"
        "            exp.request_stop('enough')\n\n"
        "    def on_checkpoint_saved(self, exp, path):\n"
        "        StopAtFour.saved.append(path)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    tiny_opts["output"].update(checkpoint_every_iters=4, handlers=[{"handler_py": "stop_at_four.StopAtFour"}])
    assert cli.main(["run", "--parameters-json", write_opts(tmp_path, tiny_opts)]) == 0
    import stop_at_four

    mid_epoch = [p for p in stop_at_four.StopAtFour.saved if not p.endswith("model_final.pt")]
    assert len(mid_epoch) == 1, stop_at_four.StopAtFour.saved  # the scheduled checkpoint is the stop's


class Slow(data.TensorData):
    """Batches that take `secs` to read."""

    def __init__(self, tensors, secs: float):
        super().__init__(*tensors)
        self.secs = secs

    def get_batch(self, indices):
        time.sleep(self.secs)
        return super().get_batch(indices)


def test_secs_per_train_counts_the_batch_fetch_but_not_test_passes_or_checkpoints(tmp_path):
    """What a user tuning the input pipeline needs to see: a slow read slows the recorded throughput; a test pass
    (0.3 s) and a checkpoint after each iteration do not."""
    exp = tiny_experiment(tmp_path, epochs=1, iterations=3, iterations_per_test=1, checkpoint_every=1)
    exp.train_dataset = Slow(exp.train_dataset.tensors, 0.05)
    exp.test_dataset = Slow(exp.test_dataset.tensors, 0.3)
    exp.run()
    secs = [row["secs_per_train"] for row in exp.history["train"]]
    assert len(secs) == 3 and all(0.05 <= s < 0.25 for s in secs), secs
    assert [row["samples_per_sec"] for row in exp.history["train"]] == [8 / s for s in secs]
