"""A search killed with SIGKILL and re-run equals an uninterrupted one; two search processes sharing a study (a
journal file, a real PostgreSQL server) claim disjoint trials and finish exactly the budget between them."""
from __future__ import annotations

import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from lab_helpers import ROOT, data_rows, env, popen, run, wait_for
from playground.search import load_study
from test_search import search_doc, write

COMPLETE = optuna.trial.TrialState.COMPLETE


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for children in glob.glob(f"/proc/{todo.pop()}/task/*/children"):
            try:
                pids = [int(p) for p in Path(children).read_text().split()]
            except OSError:
                continue
            found += pids
            todo += pids
    return found


def kill_everything(proc: subprocess.Popen) -> None:
    """SIGKILL the search's process group and every process below it (trials run in sessions of their own): what
    a lost node does."""
    below = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in below:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


def experiments(root: Path) -> dict[str, dict]:
    """tag -> status.json of every experiment under `root`."""
    return {p.parent.name: json.loads(p.read_text()) for p in root.glob("*/status.json")}


def test_a_search_killed_at_a_random_moment_and_rerun_equals_an_uninterrupted_one(tmp_path):
    path = write(tmp_path / "s.json", search_doc(algorithm={"type": "tpe", "seed": 5, "n_startup_trials": 1}))
    reference = run("search", "--parameters-json", path, PLAYGROUND_RUNS=str(tmp_path / "a"), timeout=300)
    assert reference.returncode == 0, reference.stdout + reference.stderr
    search_id = reference.stdout.split()[1].rstrip(":")

    root, trial = tmp_path / "b", random.randrange(3)
    killed = subprocess.Popen([sys.executable, "-m", "playground", "search", "--parameters-json", path], cwd=ROOT,
                              env=env(PLAYGROUND_RUNS=str(root)), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: len([p for p in root.glob("*/train.csv") if data_rows(p)]) > trial, timeout=200,
             what=f"trial {trial} to train")
    time.sleep(random.uniform(0, 1.5))  # a random moment in that trial (or just after it)
    kill_everything(killed)
    rerun = run("search", "--parameters-json", path, PLAYGROUND_RUNS=str(root), timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr

    expected, found = (load_study(search_id, str(r)).trials for r in (tmp_path / "a", root))
    assert [(t.number, t.state, t.params, t.values) for t in found] == [
        (t.number, t.state, t.params, t.values) for t in expected]  # the same trials, the same results
    assert all(t.state == COMPLETE for t in found) and len(found) == 3
    tags = [t.user_attrs["tag"] for t in found]
    book = experiments(root)
    assert sorted(book) == sorted(set(tags))  # an experiment per trial: none duplicated, none lost
    assert [book[tag]["search"]["trial"] for tag in tags] == [0, 1, 2]
    resumed = [info for info in book.values() if len(info["attempts"]) > 1]
    assert all(info["attempts"][0]["status"] == "killed" for info in resumed), resumed
    for tag in tags:  # every row once: a resumed trial went on from its checkpoint
        iterations = [int(row.split(",")[1]) for row in data_rows(root / tag / "train.csv")]
        assert iterations == list(range(1, 11)), tag


def two_workers(tmp_path: Path, storage: str, doc: dict) -> tuple[optuna.Study, dict[str, dict]]:
    """Two `playground search` processes on one storage, each with its own runs root (as two hosts would have)."""
    path = write(tmp_path / "s.json", doc)
    workers = [popen("search", "--parameters-json", path, "--storage", storage,
                     PLAYGROUND_RUNS=str(tmp_path / f"host{i}")) for i in range(2)]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    search_id = outputs[0][0].split()[1].rstrip(":")
    study = load_study(search_id, storage=storage)
    hosts = [experiments(tmp_path / f"host{i}") for i in range(2)]
    assert not set(hosts[0]) & set(hosts[1])
    ran = [[info["search"]["trial"] for info in host.values()] for host in hosts]
    assert all(ran) and not set(ran[0]) & set(ran[1]), ran  # both worked, never on the same trial
    complete = [t for t in study.trials if t.state == COMPLETE]
    assert len(complete) == doc["search"]["budget"]["trials"]  # exactly the budget between them
    assert sorted(t.number for t in complete) == sorted(ran[0] + ran[1])
    return study, {**hosts[0], **hosts[1]}


def test_two_workers_sharing_a_journal_file_claim_disjoint_trials(tmp_path):
    doc = search_doc(algorithm={"type": "random", "seed": 1}, budget={"trials": 4})
    study, _ = two_workers(tmp_path, str(tmp_path / "shared" / "journal.log"), doc)
    assert len({json.dumps(t.params, sort_keys=True) for t in study.trials if t.state == COMPLETE}) == 4


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
    return Path(found[-1]).parent if found[-1] else None


@pytest.fixture
def postgres():
    """A real PostgreSQL server on 127.0.0.1 and a free port, in a temporary folder: its URL. PostgreSQL refuses
    to run as root, so as root it runs as the postgres user."""
    pg = _postgres_bin()
    if pg is None:
        pytest.skip("no PostgreSQL binaries (initdb); .ci/run installs them")
    as_user: list[str] = []
    folder = tempfile.mkdtemp(prefix="playground-pg-")
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser, so PostgreSQL cannot be started")
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = os.path.join(folder, "data")
    subprocess.run([*as_user, str(pg / "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, str(pg / "pg_ctl"), "-D", data, "-l", os.path.join(folder, "log"), "-w", "start", "-o",
                    f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"], check=True,
                   capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(pg / "pg_ctl"), "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_sharing_postgresql_claim_disjoint_trials_of_a_pareto_search(tmp_path, postgres):
    space = {"model_param.hidden_sizes": {"choice": [[8], [16], [32, 16]]},
             "model_param.base_learning_rate": {"float": [0.01, 0.3], "log": True}}
    doc = search_doc(space, objectives=[{"metric": "test_accuracy_top1", "mode": "max"},
                                        {"metric": "flops", "mode": "min"}],
                     algorithm={"type": "nsga2", "seed": 2}, budget={"trials": 4})
    study, book = two_workers(tmp_path, postgres, doc)
    complete = [t for t in study.trials if t.state == COMPLETE]
    for t in complete:  # FLOPs per sample, as ModelStatistics counted them in the trial's own folder
        folder = Path(book[t.user_attrs["tag"]]["folder"])
        assert t.values[1] == json.loads((folder / "model_statistics.json").read_text())["flops_per_sample"]

    def dominates(a, b) -> bool:
        return a.values[0] >= b.values[0] and a.values[1] <= b.values[1] and a.values != b.values

    front = study.best_trials
    assert front and not any(dominates(other, t) for t in front for other in complete)
    assert all(any(dominates(f, t) for f in front) for t in complete if t not in front)
