"""Checkpoints: atomic and verified, never unpickling code, and resuming a killed run exactly."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, playground, write_opts
from playground import checkpoint, cli
from playground.errors import CheckpointError


def final_weights(folder) -> dict:
    return torch.load(os.path.join(folder, "model_final.pt"), weights_only=True)["model"]


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_save_is_verified_with_a_sha256sum_file(tmp_path):
    path = str(tmp_path / "c.pt")
    checkpoint.save(path, {"model": {"w": torch.ones(3)}})
    digest, name = open(path + ".sha256").read().split()
    assert name == "c.pt" and digest == hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert torch.equal(checkpoint.load(path)["model"]["w"], torch.ones(3))
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]


def test_bit_flip_and_truncation_are_detected(tmp_path):
    path = str(tmp_path / "c.pt")
    checkpoint.save(path, {"model": {"w": torch.ones(1000)}})
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(path, "wb").write(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256 does not match"):
        checkpoint.load(path)
    open(path, "wb").write(bytes(data[:100]))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        checkpoint.load(path)


class RunsAShellCommand:
    """Unpickling this calls os.system: what a booby-trapped checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickled_payload_is_refused_without_running_it(tmp_path):
    path, marker = str(tmp_path / "evil.pt"), tmp_path / "payload_ran"
    checkpoint.save(path, {"model": {}, "extra": RunsAShellCommand(marker)})  # digest matches: only pickle guards
    with pytest.raises(CheckpointError, match="refused: it holds pickled objects"):
        checkpoint.load(path)
    assert not marker.exists()


def test_failed_save_is_an_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = str(tmp_path / "c.pt")
    checkpoint.save(path, {"model": {"w": torch.zeros(2)}})

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(CheckpointError, match="cannot write"):
        checkpoint.save(path, {"model": {"w": torch.ones(2)}})
    monkeypatch.undo()
    assert torch.equal(checkpoint.load(path)["model"]["w"], torch.zeros(2))
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]


def test_corrupt_newest_checkpoint_falls_back_to_the_one_before(tiny_opts, tmp_path, caplog):
    tiny_opts["epoch_iter"]["num_epochs"] = 3
    reference = tmp_path / "reference"
    tiny_opts["output"]["checkpoint_folder"] = str(reference)
    assert cli.main(["run", "--parameters-json", write_opts(tmp_path, tiny_opts)]) == 0

    run = tmp_path / "run"
    tiny_opts["output"]["checkpoint_folder"] = str(run)
    tiny_opts["epoch_iter"]["num_epochs"] = 2
    assert cli.main(["run", "--parameters-json", write_opts(tmp_path, tiny_opts)]) == 0
    os.remove(run / "model_final.pt")
    os.remove(run / "status.json")  # make the finished experiment look unfinished again
    newest = run / "model_checkpoint_epoch2.pt"
    newest.write_bytes(newest.read_bytes()[:-10])
    tiny_opts["epoch_iter"]["num_epochs"] = 3
    assert cli.main(["run", "--parameters-json", write_opts(tmp_path, tiny_opts)]) == 0
    assert "model_checkpoint_epoch2.pt: SHA-256 does not match" in caplog.text
    assert "resuming from" in caplog.text and "model_checkpoint_epoch1.pt at epoch 1 iteration 0" in caplog.text
    assert_bitwise_equal(final_weights(run), final_weights(reference))


def test_finished_run_is_not_run_again(tiny_opts, tmp_path, caplog):
    path = write_opts(tmp_path, tiny_opts)
    assert cli.main(["run", "--parameters-json", path]) == 0
    before = os.path.getmtime(os.path.join(tiny_opts["output"]["checkpoint_folder"], "results.json"))
    assert cli.main(["run", "--parameters-json", path]) == 0
    assert "holds a finished run" in caplog.text
    assert os.path.getmtime(os.path.join(tiny_opts["output"]["checkpoint_folder"], "results.json")) == before


def test_pretrained_model_with_and_without_reset_epoch(tiny_opts, tmp_path, caplog):
    assert cli.main(["run", "--parameters-json", write_opts(tmp_path, tiny_opts)]) == 0
    pretrained = os.path.join(tiny_opts["output"]["checkpoint_folder"], "model_checkpoint_epoch1.pt")
    for reset in (True, False):
        tiny_opts["model_param"].update(pretrained_model=pretrained, reset_epoch=reset)
        folder = tmp_path / f"reset_{reset}"
        tiny_opts["output"]["checkpoint_folder"] = str(folder)
        assert cli.main(["run", "--parameters-json", write_opts(tmp_path, tiny_opts)]) == 0
        # reset_epoch: two fresh epochs from the pretrained weights; else only the second epoch is left to run.
        assert (folder / "model_checkpoint_epoch1.pt").exists() == reset
        assert torch.load(folder / "model_final.pt", weights_only=True)["state"]["global_step"] == 20
    assert "weights only, epoch 0" in caplog.text and "continuing at epoch 1" in caplog.text
    tiny_opts["model_param"]["pretrained_model"] = str(tmp_path / "missing.pt")
    tiny_opts["output"]["checkpoint_folder"] = str(tmp_path / "missing")
    assert cli.main(["run", "--parameters-json", write_opts(tmp_path, tiny_opts)]) == 2


def killed_run_opts(opts: dict, folder) -> dict:
    """Long enough (100 iterations) to be killed mid-run, checkpointing every 7 iterations."""
    opts["epoch_iter"].update(num_epochs=4, num_train_sample_per_epoch=64 * 25)
    opts["output"]["checkpoint_every_iters"] = 7
    opts["output"]["checkpoint_folder"] = str(folder)
    return opts


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run's final weights."""
    from conftest import example_opts

    tmp = tmp_path_factory.mktemp("reference")
    opts = example_opts()
    opts["epoch_iter"].update(num_test_sample=256, num_train_iteration_per_test=5)
    opts = killed_run_opts(opts, tmp / "run")
    assert playground("run", "--parameters-json", write_opts(tmp, opts)).returncode == 0
    return opts, final_weights(tmp / "run")


def start(opts_path: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "playground", "run", "--parameters-json", opts_path],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoints(folder, count: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if os.path.isdir(folder) and len([f for f in os.listdir(folder) if f.endswith(".pt")]) >= count:
            return
        time.sleep(0.005)


@pytest.mark.parametrize("kill_after_checkpoints", [0, 1, 4])
def test_sigkilled_run_resumes_to_bitwise_identical_weights(reference, tmp_path, kill_after_checkpoints):
    opts, reference_weights = reference
    folder = tmp_path / "killed"
    opts = killed_run_opts(opts, folder)
    path = write_opts(tmp_path, opts, "killed.json")
    process = start(path)
    wait_for_checkpoints(folder, kill_after_checkpoints, process)
    time.sleep(0.05 * kill_after_checkpoints)
    process.send_signal(signal.SIGKILL)
    process.wait()
    result = playground("run", "--parameters-json", path)
    assert result.returncode == 0, result.stderr
    assert_bitwise_equal(final_weights(folder), reference_weights)


def test_sigterm_checkpoints_at_the_iteration_boundary_and_resumes(reference, tmp_path):
    opts, reference_weights = reference
    folder = tmp_path / "preempted"
    opts = killed_run_opts(opts, folder)
    opts["output"]["checkpoint_every_iters"] = 0
    path = write_opts(tmp_path, opts, "preempted.json")
    process = start(path)
    wait_for_checkpoints(folder, 1, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr and "re-run the same command to resume" in stderr
    assert "Traceback" not in stderr
    assert "model_final.pt" not in os.listdir(folder)
    result = playground("run", "--parameters-json", path)
    assert result.returncode == 0, result.stderr
    assert "resuming from" in result.stderr
    assert_bitwise_equal(final_weights(folder), reference_weights)
