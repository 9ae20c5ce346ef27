"""Experiments as child processes, a few at a time: the one way sweeps and searches run their experiments.

    launcher = Launcher(jobs=2, root=root, gpus_per_job=1)
    launcher.watch(key, folder, pid, label)     # a live run that an earlier launcher started
    launcher.run_until_done(start_next, ended)  # until none runs: start_next() calls launcher.start(key, folder,
                                                # label) for `playground run --resume <folder>`; ended(key, seconds)
    launcher.signals                            # SIGINT/SIGTERM received, passed on to the runs as SIGTERM

Each run gets its own group of this process's cores (pinned, with a matching thread count) and, with
`gpus_per_job`, its own GPUs (CUDA_VISIBLE_DEVICES). It runs in a session of its own, so a Ctrl-C in the terminal
reaches only the launcher, which asks every run to checkpoint and stop; a second signal kills them. When the
launching process fails, its runs are asked to stop too: none is left running unattended.
"""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from playground.errors import UsageError
from playground.lab import status
from playground.lab.tags import is_url
from playground.opts_tree import set_dotted
from playground.workers import usable_cores

POLL_S = 0.1


def describe_point(point: dict[str, Any]) -> str:
    """The values of a point, short: "base_learning_rate=0.1 hidden_sizes=[16]"."""
    return " ".join(f"{k.rsplit('.', 1)[-1]}={json.dumps(v)}" for k, v in point.items())


def point_opts(base: dict, point: dict[str, Any], source: str) -> dict:
    """The base opts with the point's values set, in a folder of its own under the runs root; a bad key's error
    names it after `source` ("--grid ", "search.space."). A deep copy keeps the parser's markers (NaN, keys given
    twice), so validation reports them as it does for `run`."""
    opts = copy.deepcopy(base)
    for key, value in point.items():
        set_dotted(opts, key, value, f"{source}{key}")
    opts.setdefault("output", {})["checkpoint_folder"] = ""
    return opts


def core_groups(jobs: int) -> list[list[int]]:
    """This process's cores divided into `jobs` groups (shared round-robin when there are fewer cores)."""
    cores = usable_cores()
    n = len(cores)
    return [cores[i * n // jobs:(i + 1) * n // jobs] or [cores[i % n]] for i in range(jobs)]


def check_slots(jobs: int, gpus_per_job: int = 0) -> list[list[str]]:
    """The one check of --jobs and --gpus-per-trial (a UsageError naming the flag), run before anything is created,
    also by --dry-run; returns each job's GPUs."""
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    if gpus_per_job < 0:
        raise UsageError(f"--gpus-per-trial must be 0 or more, got {gpus_per_job}")
    return gpu_groups(jobs, gpus_per_job)


def gpu_groups(jobs: int, per_job: int) -> list[list[str]]:
    """The visible GPUs, `per_job` of them for each of `jobs` runs at once; a UsageError when there are too few."""
    if per_job == 0:
        return [[] for _ in range(jobs)]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = [g.strip() for g in visible.split(",") if g.strip()]
    else:
        import torch

        gpus = [str(i) for i in range(torch.cuda.device_count())]
    if per_job * jobs > len(gpus):
        raise UsageError(f"--gpus-per-trial {per_job} with --jobs {jobs} needs {per_job * jobs} GPU(s), and this "
                         f"process sees {len(gpus)}; lower --jobs or --gpus-per-trial")
    return [gpus[i * per_job:(i + 1) * per_job] for i in range(jobs)]


@dataclass
class _Run:
    slot: int
    started: float
    proc: subprocess.Popen | None = None  # a child of this launcher
    folder: str = ""                      # else: a run started by an earlier launcher, watched through status.json
    pid: int = 0

    def ended(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is not None
        return status.effective(status.read(self.folder) or {}) != "running"

    def send(self, signum: int) -> None:
        try:
            if self.proc is not None:
                self.proc.send_signal(signum)
            else:
                os.kill(self.pid, signum)
        except ProcessLookupError:
            pass


class Launcher:
    """Runs experiments under `root`, at most `jobs` at once, each pinned to its own slot of cores and GPUs."""

    def __init__(self, jobs: int, root: str, gpus_per_job: int = 0):
        self.gpus = check_slots(jobs, gpus_per_job)
        self.root, self.jobs, self.cores = root, jobs, core_groups(jobs)
        self.running: dict[Hashable, _Run] = {}
        self.signals: list[int] = []

    def free(self) -> bool:
        return len(self.running) < self.jobs

    def _slot(self) -> int:
        return min(set(range(self.jobs)) - {run.slot for run in self.running.values()})

    def start(self, key: Hashable, folder: str, label: str) -> None:
        """`playground run --resume` the experiment in `folder` (its tag, for a URL root) in a free slot; its
        terminal output is appended to console.txt there."""
        slot = self._slot()
        cores, gpus = self.cores[slot], self.gpus[slot]
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {**os.environ, "OMP_NUM_THREADS": str(len(cores)), "MKL_NUM_THREADS": str(len(cores)),
               "PYTHONPATH": os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p),
               "PLAYGROUND_RUNS": self.root if is_url(self.root) else os.path.abspath(self.root)}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        # a folder resumes as it is; a tag (URL root) first downloads the experiment if it is not here
        ref = os.path.basename(folder) if is_url(self.root) else os.path.abspath(folder)
        os.makedirs(folder, exist_ok=True)
        print(f"{label}: started on core(s) {','.join(map(str, cores))}"
              + (f", GPU(s) {','.join(gpus)}" if gpus else ""), flush=True)
        with open(os.path.join(folder, "console.txt"), "ab") as console:
            affinity = (lambda: os.sched_setaffinity(0, cores)) if hasattr(os, "sched_setaffinity") else None
            proc = subprocess.Popen([sys.executable, "-m", "playground", "run", "--resume", ref],
                                    stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True, preexec_fn=affinity)
        self.running[key] = _Run(slot, time.monotonic(), proc=proc)
        if self.signals:  # a signal came while it started: it stops too
            self.running[key].send(signal.SIGTERM)

    def watch(self, key: Hashable, folder: str, pid: int, label: str) -> None:
        """Take a slot for a run still going on this host that an earlier launcher started (and lost)."""
        print(f"{label}: still running as pid {pid}, waiting for it", flush=True)
        self.running[key] = _Run(self._slot(), time.monotonic(), folder=folder, pid=pid)

    def poll(self) -> list[tuple[Hashable, float]]:
        """(key, seconds) of every run that ended since the last call, their slots freed."""
        ended = [(key, run) for key, run in self.running.items() if run.ended()]
        for key, _ in ended:
            del self.running[key]
        return [(key, time.monotonic() - run.started) for key, run in ended]

    def on_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)
        for run in self.running.values():  # a second signal kills what the first only asked to stop
            run.send(signal.SIGTERM if len(self.signals) == 1 else signal.SIGKILL)

    def run_until_done(self, start_next: Callable[[], bool], ended: Callable[[Hashable, float], None]) -> None:
        """Until nothing runs: `ended(key, seconds)` for each run that ended, and `start_next()` (False when there
        is nothing more to start) while a slot is free and no signal came. SIGINT and SIGTERM are passed on to the
        runs; when this process fails, every run is asked to checkpoint and stop before the error goes on."""
        previous = {s: signal.signal(s, self.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while True:
                for key, seconds in self.poll():
                    ended(key, seconds)
                while self.free() and not self.signals and start_next():
                    pass
                if not self.running:
                    return
                time.sleep(POLL_S)
        except BaseException:
            self.stop_all()
            raise
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def stop_all(self, wait_s: float = 60) -> None:
        """Ask every run to checkpoint and stop, and wait for them (the launcher's caller is failing)."""
        for run in self.running.values():
            run.send(signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while self.running and time.monotonic() < deadline:
            time.sleep(POLL_S)
            self.poll()
