"""One process per experiment: the run folder's lock (two runs started together, --resume beside a run, a
SIGKILLed holder), and run folders that cannot be made."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import threading
from pathlib import Path

import pandas as pd
import pytest

from lab_helpers import ROOT, data_rows, popen, run, wait_for, write_opts
from playground import cli
from playground.errors import UsageError
from playground.lab import ExperimentRepository, status


def tiny_opts(folder: Path | None, **output) -> dict:
    """The MLP example: 10 iterations per epoch, 2 epochs, every iteration recorded, in `folder` (None: under the
    runs root)."""
    opts = json.loads((ROOT / "examples" / "mlp_synthetic.json").read_text())["opts"]
    opts["epoch_iter"].update(num_train_sample_per_epoch=640, num_test_sample=256, num_epochs=2,
                              num_train_iteration_per_test=5)
    opts["output"].update(plots=[], progress_bar=False, record_every_iters=1, checkpoint_folder=str(folder or ""),
                          **output)
    return opts


def slow_git(tmp_path: Path) -> str:
    """A PATH whose `git diff` takes 2 s: the git provenance a run records before status.json says running lasts
    long enough that two runs started together would both pass a check made by reading status.json."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    git = bin_dir / "git"
    git.write_text(f'#!/bin/sh\n[ "$1" = diff ] && sleep 2\nexec {shutil.which("git")} "$@"\n')
    git.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def test_a_refused_process_names_a_holder_that_writes_its_name_just_after_taking_the_lock(tmp_path):
    """The holder takes the lock, then writes its pid and host: a process refused in between waits for them."""
    lock = os.open(tmp_path / status.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # taken, not yet named
        name = threading.Timer(0.2, os.pwrite, (lock, json.dumps({"pid": 4242, "host": "elsewhere"}).encode(), 0))
        name.start()
        with pytest.raises(UsageError, match="in use by pid 4242 on elsewhere"):
            with status.held(str(tmp_path)):
                pass
        name.join()
    finally:
        os.close(lock)


def test_two_runs_on_one_folder_one_trains_and_a_sigkilled_holder_does_not_block(tmp_path):
    folder, root, release = tmp_path / "run", tmp_path / "runs", tmp_path / "release"
    opts = tiny_opts(folder, handlers=[{"handler_py": "lab_helpers.PauseAt", "kargs": {"step": 3,
                                                                                      "until": str(release)}}])
    command = ("run", "--parameters-json", write_opts(tmp_path / "opts.json", opts))
    path = slow_git(tmp_path)
    procs = [popen(*command, PLAYGROUND_RUNS=str(root), PATH=path) for _ in range(2)]
    try:
        wait_for(lambda: any(p.poll() is not None for p in procs), what="one of the two runs to be refused")
        (loser,) = [p for p in procs if p.poll() is not None]
        (holder,) = [p for p in procs if p is not loser]
        err = loser.communicate(timeout=60)[1]
        assert loser.returncode == 2, err
        assert f"{folder} is in use by pid {holder.pid} on {socket.gethostname()}" in err, err
        wait_for(lambda: len(data_rows(folder / "train.csv")) >= 3, what="the holder's three rows")
        assert holder.poll() is None  # it trains on, paused at step 3

        resumed = run("run", "--resume", str(folder), PLAYGROUND_RUNS=str(root))  # as a sweep starts a point
        assert resumed.returncode == 2 and f"in use by pid {holder.pid}" in resumed.stderr, resumed.stderr
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.communicate(timeout=60)
    assert holder.returncode == -signal.SIGKILL
    lock = json.loads((folder / status.LOCK_FILE).read_text())  # left behind by the SIGKILL
    assert (lock["pid"], lock["host"]) == (holder.pid, socket.gethostname())
    (tag,) = os.listdir(root)  # one experiment: one pointer
    assert status.LOCK_FILE not in ExperimentRepository(str(root))[tag].list_artifacts()

    release.touch()
    again = run(*command, PLAYGROUND_RUNS=str(root))  # the same command: the stale lock does not block
    assert again.returncode == 0, again.stderr
    assert os.listdir(root) == [tag] and not (folder / status.LOCK_FILE).exists()
    info = json.loads((folder / "status.json").read_text())
    assert [a["status"] for a in info["attempts"]] == ["killed", "complete"]
    assert pd.read_csv(folder / "train.csv")["iteration"].tolist() == list(range(1, 21))  # each row once
    test = pd.read_csv(folder / "test.csv")
    assert len(test) and not test.duplicated(["epoch", "iteration"]).any()


def test_a_run_folder_that_cannot_be_made_is_a_usage_error_naming_it(tmp_path, runs_root, capsys, monkeypatch):
    not_a_folder = tmp_path / "afile"
    not_a_folder.write_text("a file where a folder is expected")
    opts = json.dumps({"opts": tiny_opts(not_a_folder / "run")})
    assert cli.main(["run", "--parameters-json", opts]) == 2
    err = capsys.readouterr().err
    assert f"cannot create the run folder {not_a_folder / 'run'} (Not a directory)" in err and err.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["afile"]  # nothing created, the runs root included

    monkeypatch.setenv("PLAYGROUND_RUNS", "/proc/playground-runs")  # not writable, even by root
    assert cli.main(["run", "--parameters-json", json.dumps({"opts": tiny_opts(None)})]) == 2
    err = capsys.readouterr().err
    assert "cannot create the run folder /proc/playground-runs/" in err and err.count("\n") == 1


def test_an_empty_resume_is_a_usage_error_naming_it(runs_root, capsys):
    assert cli.main(["run", "--resume", ""]) == 2
    assert "playground: error: --resume needs a tag" in capsys.readouterr().err
