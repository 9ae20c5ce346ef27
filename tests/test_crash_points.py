"""Nothing lost, never stuck: a kill or a full disk at the exact points around the first digest and the final
checkpoint, and Ctrl-C. Real processes, real SIGKILL/SIGINT, a real full file system (a small tmpfs)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import example_opts
from lab_helpers import TESTS, data_rows, env, popen, run, wait_for, write_opts
from playground import checkpoint


def small_opts(folder, epochs: int = 2, handlers: list | None = None) -> dict:
    opts = example_opts()
    opts["epoch_iter"].update(num_train_sample_per_epoch=256, num_test_sample=128, num_epochs=epochs)
    opts["output"].update(checkpoint_folder=str(folder), plots=[{"x": "epochs", "ys": ["test_loss"]}],
                          handlers=handlers or [])
    return opts


def crash_at(mode: str, name: str, opts_path: str) -> subprocess.CompletedProcess:
    """`playground run` with a SIGKILL (mode kill) or a full disk (mode fill) at the write of file `name`."""
    return subprocess.run([sys.executable, str(TESTS / "crash_at_write.py"), mode, name, "--", "run",
                           "--parameters-json", opts_path], env=env(), capture_output=True, text=True, timeout=120)


def final_weights(folder) -> dict:
    return checkpoint.load(os.path.join(folder, "model_final.pt"))["model"]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def uninterrupted(tmp_path) -> dict:
    folder = tmp_path / "uninterrupted"
    assert run("run", "--parameters-json", write_opts(tmp_path / "u.json", small_opts(folder))).returncode == 0
    return final_weights(folder)


def test_a_kill_before_the_first_digest_starts_afresh_and_stale_temp_files_go(tmp_path, uninterrupted):
    folder = tmp_path / "run"
    opts_path = write_opts(tmp_path / "opts.json", small_opts(folder))
    killed = crash_at("kill", "model_checkpoint_epoch1.pt.sha256", opts_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (folder / "model_checkpoint_epoch1.pt").exists() and not (folder / "model_checkpoint_epoch1.pt.sha256").exists()
    (folder / "model_checkpoint_epoch1.pt.tmp4242").write_bytes(b"half a save")
    rerun = run("run", "--parameters-json", opts_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "has no digest, so its save was cut short" in rerun.stderr
    assert not [f for f in os.listdir(folder) if ".tmp" in f]
    assert same(final_weights(folder), uninterrupted)  # started afresh: the same run as an uninterrupted one


def test_a_kill_after_the_final_checkpoint_is_finished_without_training(tmp_path):
    folder = tmp_path / "run"
    opts_path = write_opts(tmp_path / "opts.json", small_opts(folder))
    killed = crash_at("kill", "results.json", opts_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (folder / "model_final.pt").exists() and not (folder / "results.json").exists()
    rows = data_rows(folder / "train.csv")
    rerun = run("run", "--parameters-json", opts_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "writing the results it owes" in rerun.stderr
    assert data_rows(folder / "train.csv") == rows  # no step was trained again
    results = json.loads((folder / "results.json").read_text())
    assert results["epochs_completed"] == 2 and any(f.startswith("plot0") for f in os.listdir(folder))
    assert json.loads((folder / "status.json").read_text())["status"] == "complete"
    again = run("run", "--parameters-json", opts_path)
    assert again.returncode == 0 and "holds a finished run" in again.stderr


def test_a_full_disk_at_the_first_digest_reports_that_error_and_the_rerun_recovers(tmp_path):
    mount = tmp_path / "small_disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("needs to mount a small tmpfs (root in a machine that allows it)")
    try:
        folder = mount / "run"
        opts_path = write_opts(tmp_path / "opts.json", small_opts(folder))
        full = crash_at("fill", "model_checkpoint_epoch1.pt.sha256", opts_path)
        assert full.returncode == 1
        errors = [line for line in full.stderr.splitlines() if line.startswith("playground: error:")]
        assert errors == [f"playground: error: {folder}/model_checkpoint_epoch1.pt.sha256: cannot write (No space "
                          "left on device); free space or fix permissions, then re-run to resume from the last good "
                          "checkpoint"], full.stderr[-2000:]
        (folder / "filler").unlink()
        rerun = run("run", "--parameters-json", opts_path)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert json.loads((folder / "status.json").read_text())["status"] == "complete"
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_ctrl_c_checkpoints_and_exits_143_and_the_rerun_resumes(tmp_path, uninterrupted):
    folder = tmp_path / "run"
    opts_path = write_opts(tmp_path / "opts.json", small_opts(
        folder, handlers=[{"handler_py": "lab_helpers.SleepPerIteration", "kargs": {"secs": 0.05}}]))
    process = popen("run", "--parameters-json", opts_path)
    wait_for(lambda: len(data_rows(folder / "train.csv")) >= 1, what="a first recorded row")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, err[-2000:]
    assert "stopped by SIGINT" in err and any("_iter" in f for f in os.listdir(folder))
    assert json.loads((folder / "status.json").read_text())["status"] == "interrupted"
    assert run("run", "--parameters-json", opts_path).returncode == 0
    assert same(final_weights(folder), uninterrupted)


def test_a_second_ctrl_c_aborts_at_once(tmp_path):
    folder = tmp_path / "run"
    opts = small_opts(folder, handlers=[{"handler_py": "lab_helpers.SleepPerIteration", "kargs": {"secs": 2.0}}])
    opts["output"]["record_every_iters"] = 1
    process = popen("run", "--parameters-json", write_opts(tmp_path / "opts.json", opts))
    wait_for(lambda: len(data_rows(folder / "train.csv")) >= 1, what="a first recorded row")
    process.send_signal(signal.SIGINT)  # in the loop: asks for a checkpoint at the next boundary, 2 s away
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err[-2000:]
    assert not [f for f in os.listdir(folder) if ".tmp" in f]


def test_an_interrupt_during_a_save_leaves_no_temporary_file(tmp_path, monkeypatch):
    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_write(str(tmp_path / "model.pt"), b"weights")
    assert os.listdir(tmp_path) == []


def test_a_checkpoint_of_a_newer_format_is_a_clear_error(tmp_path):
    path = str(tmp_path / "future.pt")
    checkpoint.save(path, {"format_version": checkpoint.FORMAT_VERSION + 1, "model": {}})
    with pytest.raises(checkpoint.CheckpointError, match=r"future.pt: written in checkpoint format 3, newer than "
                                                         r"this playground reads \(2\); upgrade torch-playground"):
        checkpoint.load(path)


def test_the_opts_are_stored_once_per_run_and_each_checkpoint_holds_their_digest(tmp_path):
    folder = tmp_path / "run"
    assert run("run", "--parameters-json", write_opts(tmp_path / "opts.json", small_opts(folder))).returncode == 0
    saved = json.loads((folder / "opts.json").read_text())
    for name in ("model_checkpoint_epoch2.pt", "model_final.pt"):
        held = checkpoint.load(str(folder / name))
        assert "opts" not in held and held["opts_sha256"] == checkpoint.opts_digest(saved)


def test_resume_never_takes_a_weights_only_file_for_a_checkpoint(tmp_path):
    from playground.testing import tiny_experiment

    exp = tiny_experiment(tmp_path, epochs=1, iterations=2)
    exp.run()
    checkpoint.save(str(tmp_path / "model_ema.pt"), {"model": exp.network.state_dict()})  # newest, weights only
    path, saved = checkpoint.newest_intact(str(tmp_path))
    assert os.path.basename(path) == "model_final.pt" and saved["state"]["global_step"] == 2
