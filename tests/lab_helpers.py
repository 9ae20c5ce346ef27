"""Handlers and helpers for the lab-book tests. Opts name the handlers by dotted path, e.g.
{"handler_py": "lab_helpers.SigkillAt", "kargs": {"step": 7}}; subprocesses find this module through PYTHONPATH."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from playground.events import EventHandler

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


class SigkillAt(EventHandler):
    """SIGKILLs its own process after training step `step` (its row recorded): a kill at a known point."""

    def __init__(self, step: int, marker: str = ""):
        self.step, self.marker = step, marker

    def on_iteration_end(self, exp) -> None:
        if exp.state.global_step == self.step and not (self.marker and os.path.exists(self.marker)):
            if self.marker:
                Path(self.marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)


class InterruptParentOnce(EventHandler):
    """At step `step` of the experiment whose learning rate is `lr`, SIGTERMs the parent process (a sweep), once."""

    def __init__(self, step: int, lr: float, marker: str):
        self.step, self.lr, self.marker = step, lr, marker

    def on_iteration_end(self, exp) -> None:
        if (exp.state.global_step == self.step and exp.opts["model_param"]["base_learning_rate"] == self.lr
                and not os.path.exists(self.marker)):
            Path(self.marker).touch()
            os.kill(os.getppid(), signal.SIGTERM)
            deadline = time.monotonic() + 30  # wait for the sweep to pass the stop on: a known stopping point
            while not (exp.state.stop_requested or exp.state.stop) and time.monotonic() < deadline:
                time.sleep(0.01)


class PauseAt(EventHandler):
    """After training step `step`, waits (up to a minute) until the file `until` exists: a run held mid-training
    while a test starts others beside it."""

    def __init__(self, step: int, until: str):
        self.step, self.until = step, until

    def on_iteration_end(self, exp) -> None:
        if exp.state.global_step == self.step:
            wait_for(lambda: os.path.exists(self.until), timeout=60, what=self.until)


class SignalAt(EventHandler):
    """Sends signal `signum` to process `pid` after training step `step`, once: e.g. stops a test's S3 server while
    the run trains."""

    def __init__(self, step: int, pid: int, signum: int):
        self.step, self.pid, self.signum = step, pid, signum

    def on_iteration_end(self, exp) -> None:
        if exp.state.global_step == self.step:
            os.kill(self.pid, self.signum)


class SleepPerIteration(EventHandler):
    """Makes each iteration last at least `secs`, so that a test can watch a run while it trains."""

    def __init__(self, secs: float):
        self.secs = secs

    def on_iteration_end(self, exp) -> None:
        time.sleep(self.secs)


def env(**extra: str) -> dict:
    """The environment of a `playground` subprocess: this repository and tests/ importable, one thread."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]), "OMP_NUM_THREADS": "1", **extra}


def popen(*args: str, **extra_env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "playground", *args], cwd=ROOT, env=env(**extra_env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(*args: str, timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "playground", *args], cwd=ROOT, env=env(**extra_env),
                          capture_output=True, text=True, timeout=timeout)


def write_opts(path: Path, opts: dict) -> str:
    path.write_text(json.dumps({"opts": opts}))
    return str(path)


def wait_for(predicate, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.05)


def data_rows(path: Path) -> list[str]:
    """The data lines of a CSV (header left out); [] when it does not exist yet."""
    try:
        return path.read_text().splitlines()[1:]
    except FileNotFoundError:
        return []
