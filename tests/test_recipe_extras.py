"""The training recipe's extras: gradient clipping, gradient accumulation and an EMA of the weights — equal to a
handwritten loop, exact across a kill and resume, and the same on two processes as on one."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

import lab_helpers
from conftest import example_opts
from playground import checkpoint, data
from playground.errors import OptsError, UsageError
from playground.events import EventHandler
from playground.handlers import EMA
from playground.runner import prepare
from playground.testing import tiny_experiment

# ---------------------------------------------------------------------------------------------- in-process


def handwritten(init: dict, inputs: torch.Tensor, labels: torch.Tensor, *, epochs: int, steps: int, batch: int,
                k: int, seed: int = 0, clip_norm: float = 0, clip_value: float = 0) -> tuple[dict, list[float]]:
    """Plain torch: SGD(lr 0.1) on a Linear, k batches of `batch` per step, the loss divided by k, clipped; the
    epoch order is playground's documented one. Returns the final weights and the last step's batch losses."""
    net = torch.nn.Linear(inputs.shape[1], int(labels.max()) + 1)
    net.load_state_dict(init)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for epoch in range(epochs):
        order = data.epoch_order(len(inputs), steps * k * batch, seed, epoch)
        for step in range(steps):
            optimizer.zero_grad(set_to_none=True)
            losses = []
            for j in range(k):
                index = order[(step * k + j) * batch:(step * k + j + 1) * batch]
                loss = F.cross_entropy(net(inputs[index]), labels[index])
                (loss / k).backward()
                losses.append(loss.item())
            if clip_norm:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip_norm)
            if clip_value:
                torch.nn.utils.clip_grad_value_(net.parameters(), clip_value)
            optimizer.step()
    return net.state_dict(), losses


@pytest.mark.parametrize("clip", [{}, {"grad_clip_norm": 0.05}, {"grad_clip_value": 0.01}])
def test_accumulation_and_clipping_equal_a_handwritten_loop_bitwise(tmp_path, clip):
    exp = tiny_experiment(tmp_path, epochs=2, iterations=4, batch_size=8, accumulate_grad_batches=3,
                          total_batch_size=24, **clip)
    init = copy.deepcopy(exp.network.state_dict())
    results = exp.run()
    inputs, labels = exp.train_dataset.tensors
    expected, last_losses = handwritten(init, inputs, labels, epochs=2, steps=4, batch=8, k=3,
                                        clip_norm=clip.get("grad_clip_norm", 0),
                                        clip_value=clip.get("grad_clip_value", 0))
    for name, value in exp.network.state_dict().items():
        assert torch.equal(value, expected[name]), name
    assert exp.state.global_step == 8 and results["total_batch_size"] == 24
    # the recorded train loss is that of the whole step: every batch it accumulated
    assert exp.history["train"][-1]["train_loss"] == pytest.approx(sum(last_losses) / 3, rel=1e-6)


def test_clipping_changes_the_step_and_is_off_by_default(tmp_path):
    def final(**settings):
        exp = tiny_experiment(tmp_path, epochs=1, **settings)
        exp.run()
        return exp.network.state_dict()

    plain, clipped = final(), final(grad_clip_norm=0.01)
    assert not torch.equal(plain["weight"], clipped["weight"])


def test_accumulated_batches_equal_one_big_batch(tmp_path):
    """Dividing each loss by k makes k batches of 8 one step on their 24 samples."""
    big = tiny_experiment(tmp_path / "big", batch_size=8, batch_per_device=24, total_batch_size=24)
    small = tiny_experiment(tmp_path / "small", batch_size=8, accumulate_grad_batches=3, total_batch_size=24)
    big.run(), small.run()
    for name, value in big.network.state_dict().items():
        torch.testing.assert_close(small.network.state_dict()[name], value, rtol=0, atol=1e-6)


def test_under_ddp_only_the_stepping_batch_all_reduces(tmp_path):
    """DistributedDataParallel's no_sync for the batches before the last of a step: one gradient exchange per
    optimizer step, not one per batch."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        exp = tiny_experiment(tmp_path / "run", epochs=1, iterations=4, world_size=2, accumulate_grad_batches=2,
                              total_batch_size=32)
        exchanges = []

        def counting(state, bucket):
            exchanges.append(bucket.index())
            return allreduce_hook(state, bucket)

        exp.model.register_comm_hook(None, counting)
        exp.run()
    finally:
        dist.destroy_process_group()
    assert exp.state.global_step == 4 and len(exchanges) == 4  # one bucket per step


def test_ema_follows_the_weights_and_leaves_training_untouched(tmp_path):
    snapshots = []

    class Snapshot(EventHandler):
        def on_iteration_end(self, exp):
            snapshots.append({k: v.clone() for k, v in exp.network.state_dict().items()})

    plain = tiny_experiment(tmp_path / "plain")
    plain.run()
    ema = EMA(decay=0.5)
    exp = tiny_experiment(tmp_path / "ema", handlers=[ema, Snapshot()])
    start = {k: v.clone() for k, v in exp.network.state_dict().items()}
    exp.run()
    for name, value in plain.network.state_dict().items():  # the extra test passes changed nothing
        assert torch.equal(exp.network.state_dict()[name], value), name
    expected = start
    for weights in snapshots:
        expected = {k: 0.5 * expected[k] + 0.5 * weights[k] for k in expected}
    for name, value in expected.items():
        torch.testing.assert_close(ema.weights[name], value)
    rows = exp.history["test"]
    assert len(rows) == 2 and all({"ema_test_loss", "ema_test_accuracy"} <= row.keys() for row in rows)
    assert rows[-1]["ema_test_loss"] != rows[-1]["test_loss"]
    saved = checkpoint.load(str(tmp_path / "ema" / "model_ema.pt"))
    assert all(torch.equal(saved["model"][k], ema.weights[k]) for k in expected)
    final = tmp_path / "ema" / "model_final.pt"
    assert os.path.getmtime(tmp_path / "ema" / "model_ema.pt") < os.path.getmtime(final)
    assert checkpoint.newest_intact(str(tmp_path / "ema"))[0] == str(final)  # resume never takes model_ema.pt


def test_ema_with_decay_0_is_the_weights_themselves(tmp_path):
    exp = tiny_experiment(tmp_path, handlers=[EMA(decay=0)])
    exp.run()
    row = exp.history["test"][-1]
    assert row["ema_test_loss"] == row["test_loss"] and row["ema_test_accuracy"] == row["test_accuracy"]


@pytest.mark.parametrize("kargs, message", [({"decay": 1}, "decay must be a number in [0, 1)"),
                                            ({"decay": "0.9"}, "decay must be a number in [0, 1)"),
                                            ({"filename": "ema.pth"}, "ending in .pt")])
def test_bad_ema_arguments_are_usage_errors(kargs, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace(")", r"\)")):
        EMA(**kargs)


# ---------------------------------------------------------------------------------------------- opts


@pytest.mark.parametrize("key, value, message", [
    ("model_param.grad_clip_norm", -1, "model_param.grad_clip_norm: must be at least 0, got -1"),
    ("model_param.grad_clip_value", "big", 'model_param.grad_clip_value: expected a number, got "big"'),
    ("epoch_iter.accumulate_grad_batches", 0, "epoch_iter.accumulate_grad_batches: must be at least 1, got 0"),
    ("epoch_iter.accumulate_grad_batches", 1.5, "epoch_iter.accumulate_grad_batches: expected an integer"),
    ("epoch_iter.accumulate_grad_batches", 200, "less than one global batch (12800); raise it or lower "
                                                "batch_per_device or accumulate_grad_batches"),
])
def test_bad_recipe_opts_name_the_key(key, value, message):
    opts = example_opts()
    section, name = key.split(".")
    opts[section][name] = value
    with pytest.raises(OptsError) as e:
        prepare(opts)
    assert message in str(e.value)


def test_clipping_by_norm_and_by_value_at_once_is_refused(tmp_path):
    opts = example_opts()
    opts["model_param"].update(grad_clip_norm=1.0, grad_clip_value=0.5)
    opts["output"]["checkpoint_folder"] = str(tmp_path / "run")
    result = lab_helpers.run("run", "--parameters-json", lab_helpers.write_opts(tmp_path / "o.json", opts))
    assert result.returncode == 2, result.stderr
    assert "model_param.grad_clip_value: given together with grad_clip_norm" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_ema_kargs_are_checked_with_the_opts():
    opts = example_opts()
    opts["output"]["handlers"] = [{"handler_py": "EMA", "kargs": {"decay": 1.5}}]
    with pytest.raises(OptsError, match=r"output.handlers\[0\].kargs: EMA: decay must be"):
        prepare(opts)


def test_defaults_leave_the_recipe_as_it_was():
    opts, _ = prepare(example_opts())
    assert opts["epoch_iter"]["accumulate_grad_batches"] == 1
    assert opts["model_param"]["grad_clip_norm"] == 0 and opts["model_param"]["grad_clip_value"] == 0


# ---------------------------------------------------------------------------------------------- end to end


def recipe_opts(folder: Path, marker: Path, by_name: bool = False, **distributed) -> dict:
    """The MLP example, tiny: 640 samples per epoch, 2 epochs of 10 optimizer steps of 64 samples, each 2 batches
    of 32 per step over the processes; an EMA, clipping, a checkpoint every 3 steps, and a SIGKILL at step 14
    unless `marker` exists. by_name: AdamW with a OneCycleLR schedule from torch_recipe instead of the SGD."""
    opts = example_opts()
    if by_name:
        opts["model"]["parameter_update_py"] = "torch_recipe"
        opts["model_param"].update(optimizer={"type": "AdamW", "params": {"weight_decay": 0.05}},
                                   lr_scheduler={"type": "OneCycleLR", "params": {"total_steps": "auto"}})
    opts["epoch_iter"].update(num_train_sample_per_epoch=640, num_test_sample=256, num_epochs=2,
                              num_train_iteration_per_test=5, batch_per_device=32, accumulate_grad_batches=2)
    opts["distributed"].update(rendezvous_timeout_s=30, **distributed)
    opts["model_param"]["grad_clip_norm"] = 1.0
    opts["output"].update(checkpoint_folder=str(folder), checkpoint_every_iters=3, plots=[], handlers=[
        {"handler_py": "EMA", "kargs": {"decay": 0.9}},
        {"handler_py": "lab_helpers.SigkillAt", "kargs": {"step": 14, "marker": str(marker)}}])
    return opts


def run_opts(tmp_path: Path, opts: dict, name: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "playground", "run", "--parameters-json",
                           lab_helpers.write_opts(tmp_path / name, opts)], cwd=lab_helpers.ROOT,
                          env=lab_helpers.env(GLOO_SOCKET_IFNAME="lo", PLAYGROUND_RUNS=str(tmp_path / "runs")),
                          capture_output=True, text=True, timeout=180)


def outcome(folder: Path) -> tuple[dict, dict, list]:
    """Final weights, EMA weights, and the EMA's test metrics."""
    results = json.loads((folder / "results.json").read_text())
    return (checkpoint.load(str(folder / "model_final.pt"))["model"], checkpoint.load(str(folder / "model_ema.pt"))
            ["model"], results["metrics"]["ema_test_loss"]["values"])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    (tmp / "never").touch()
    result = run_opts(tmp, recipe_opts(tmp / "run", tmp / "never"), "opts.json")
    assert result.returncode == 0, result.stderr
    assert "total batch size 64 (32 per device x 1 process(es) x 2 accumulated batch(es) per optimizer step); " \
           "10 optimizer steps per epoch" in result.stderr
    results = json.loads((tmp / "run" / "results.json").read_text())
    assert results["total_batch_size"] == 64 and results["epoch_iterations"] == 10 and results["global_step"] == 20
    assert "ema_test_loss" in (tmp / "run" / "test.csv").read_text().splitlines()[0]
    return outcome(tmp / "run")


def test_sigkilled_run_with_accumulation_and_ema_resumes_bitwise(tmp_path, uninterrupted):
    opts = recipe_opts(tmp_path / "run", tmp_path / "killed-once")
    killed = run_opts(tmp_path, opts, "opts.json")
    assert killed.returncode == -9, killed.stderr  # SIGKILLed at step 14, after the checkpoint of step 12
    resumed = run_opts(tmp_path, opts, "opts.json")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and "at epoch 1 iteration 2" in resumed.stderr
    weights, ema, ema_losses = outcome(tmp_path / "run")
    expected_weights, expected_ema, expected_losses = uninterrupted
    for got, expected in ((weights, expected_weights), (ema, expected_ema)):
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert ema_losses == expected_losses


def test_sigkilled_adamw_onecycle_accumulation_ema_run_resumes_bitwise(tmp_path):
    """The whole recipe by name at once: AdamW + OneCycleLR + accumulation + clipping + EMA, killed and resumed."""
    (tmp_path / "never").touch()
    whole = recipe_opts(tmp_path / "whole", tmp_path / "never", by_name=True)
    assert run_opts(tmp_path, whole, "whole.json").returncode == 0
    opts = recipe_opts(tmp_path / "run", tmp_path / "killed-once", by_name=True)
    assert run_opts(tmp_path, opts, "opts.json").returncode == -9
    resumed = run_opts(tmp_path, opts, "opts.json")
    assert resumed.returncode == 0 and "resuming from" in resumed.stderr, resumed.stderr
    for got, expected in zip(outcome(tmp_path / "run"), outcome(tmp_path / "whole")):
        if isinstance(got, dict):
            assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected)
        else:
            assert got == expected


def test_two_processes_with_accumulation_equal_one_with_the_same_global_batch(tmp_path, uninterrupted):
    (tmp_path / "never").touch()
    opts = recipe_opts(tmp_path / "run", tmp_path / "never", num_cpus=2)
    opts["epoch_iter"]["batch_per_device"] = 16  # 16 x 2 processes x 2 batches: the same 64 samples per step
    result = run_opts(tmp_path, opts, "opts.json")
    assert result.returncode == 0, result.stdout + result.stderr
    weights, ema, ema_losses = outcome(tmp_path / "run")
    expected_weights, expected_ema, expected_losses = uninterrupted
    for got, expected in ((weights, expected_weights), (ema, expected_ema)):
        assert max((got[k] - expected[k]).abs().max().item() for k in expected) <= 1e-5
    assert ema_losses == pytest.approx(expected_losses, abs=1e-5)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["total_batch_size"] == 64 and results["epoch_iterations"] == 10


def test_fp16_clipping_acts_on_unscaled_gradients(tmp_path):
    """With loss scaling the gradients are unscaled before clipping (GradScaler.unscale_): the limit is in the
    gradients' true units. Plain torch with the AMP recipe gives the same weights, on CPU bit for bit."""
    exp = tiny_experiment(tmp_path, epochs=1, iterations=4, batch_size=8, accumulate_grad_batches=2,
                          total_batch_size=16, mixed_precision="fp16", grad_clip_norm=0.05)
    init = copy.deepcopy(exp.network.state_dict())
    exp.run()
    inputs, labels = exp.train_dataset.tensors
    net = torch.nn.Linear(4, 3)
    net.load_state_dict(init)
    optimizer, scaler = torch.optim.SGD(net.parameters(), lr=0.1), torch.amp.GradScaler("cpu")
    order = data.epoch_order(len(inputs), 4 * 16, 0, 0)
    for step in range(4):
        optimizer.zero_grad(set_to_none=True)
        for j in range(2):
            index = order[(step * 2 + j) * 8:(step * 2 + j + 1) * 8]
            with torch.autocast("cpu", dtype=torch.float16):
                loss = F.cross_entropy(net(inputs[index]), labels[index])
            scaler.scale(loss / 2).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 0.05)
        scaler.step(optimizer)
        scaler.update()
    for name, value in net.state_dict().items():
        assert torch.equal(exp.network.state_dict()[name], value), name
