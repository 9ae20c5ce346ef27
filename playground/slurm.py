"""`playground run|sweep ... --submit slurm`: the same command, run as a Slurm job through submitit.

    playground run --opts exp.json --submit slurm --slurm partition=gpu --slurm time=240 --slurm gpus_per_node=8 \\
                   --slurm nodes=2 --set distributed.num_gpus=8

Before submitting, the run's folder is pinned: an experiment without output.checkpoint_folder (or --resume) is
created here as a queued experiment, and the job runs `playground run --resume <folder>`, so a requeued job
continues the same experiment from its last checkpoint. A sweep submits one job per unfinished point.

Preemption and time limits: Slurm sends --signal (default TERM) shortly before it stops the job; the job's
playground process checkpoints and stops, and submitit requeues the job (JobCommand is checkpointable).
Several nodes: each node runs one process of the command, as shard SLURM_NODEID of SLURM_NNODES, meeting at
the first node of the job (model.rendezvous_py rendezvous_tcp, distributed.master_addr).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

from playground.errors import UsageError

log = logging.getLogger(__name__)
# --slurm keys with a name of their own in submitit; any other key is passed on as submitit's slurm_<key>
NAMED = {"time": "timeout_min", "nodes": "nodes", "gpus_per_node": "gpus_per_node", "cpus_per_task": "cpus_per_task",
         "mem_gb": "mem_gb", "partition": "slurm_partition"}
SIGNAL_DELAY_S = 120


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--submit", choices=["slurm"], help="submit the command as a Slurm job (needs submitit: "
                        "pip install torch-playground[slurm]) and exit once it is queued")
    parser.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE", help="a job setting: partition, "
                        "time (minutes), nodes, gpus_per_node, cpus_per_task, mem_gb, or any other sbatch option "
                        "(e.g. account=abc, constraint=volta); repeatable")
    parser.add_argument("--signal", default="TERM", metavar="NAME", help="the signal Slurm sends before preempting "
                        f"the job or at its time limit, {SIGNAL_DELAY_S} s ahead (default TERM)")


def parameters(items: list[str]) -> dict[str, Any]:
    """`--slurm KEY=VALUE` arguments as submitit parameters; integers as integers."""
    found: dict[str, Any] = {"tasks_per_node": 1}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not value:
            raise UsageError(f"--slurm {item!r}: expected KEY=VALUE, e.g. --slurm partition=gpu or --slurm time=60")
        found[NAMED.get(key, f"slurm_{key}")] = int(value) if value.isdigit() else value
    return found


def signal_name(name: str) -> str:
    """`USR1`, `SIGUSR1` or `10` as submitit and sbatch spell it: USR1."""
    bare = name.upper().removeprefix("SIG")
    try:
        return signal.Signals(int(bare) if bare.isdigit() else getattr(signal, "SIG" + bare)).name[3:]
    except (AttributeError, ValueError):
        raise UsageError(f"--signal {name}: not a signal name; use e.g. TERM, USR1 or USR2") from None


class JobCommand:
    """A playground command line, run on each node of the job; on preemption it returns itself to be requeued."""

    def __init__(self, argv: list[str], preempt_signal: str = "TERM"):
        self.argv, self.preempt_signal = list(argv), preempt_signal
        self.process: subprocess.Popen | None = None

    def __call__(self) -> int:
        argv = self.argv + distributed_args(os.environ)
        sig = getattr(signal, "SIG" + self.preempt_signal)
        # The playground process checkpoints on SIGTERM; any other warning signal is ours to turn into SIGTERM.
        ignore = None if sig == signal.SIGTERM else (lambda: signal.signal(sig, signal.SIG_IGN))
        self.process = subprocess.Popen([sys.executable, "-m", "playground", *argv], preexec_fn=ignore)
        while (code := self.process.poll()) is None:  # not wait(): checkpoint() waits for it from a signal handler
            time.sleep(0.2)
        if code != 0:
            raise RuntimeError(f"playground {' '.join(argv)} exited with {code}")
        return code

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Called by submitit on the warning signal: let playground checkpoint and stop, then requeue this."""
        import submitit

        if self.process is not None and self.process.poll() is None:
            if self.preempt_signal != "TERM":  # Slurm sent SIGTERM to the playground process itself otherwise
                self.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + SIGNAL_DELAY_S - 30
            while self.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            if self.process.poll() is None:
                log.warning("playground did not stop within %d s; requeueing from its last checkpoint",
                            SIGNAL_DELAY_S - 30)
        return submitit.helpers.DelayedSubmission(JobCommand(self.argv, self.preempt_signal))


def distributed_args(env: Any) -> list[str]:
    """Arguments for `playground run` on one node of a multi-node job: its shard id and shard 0's address."""
    nodes = int(env.get("SLURM_NNODES", env.get("SLURM_JOB_NUM_NODES", "1")))
    if nodes <= 1:
        return []
    from submitit.slurm.slurm import _parse_node_list

    master = _parse_node_list(env["SLURM_JOB_NODELIST"])[0]
    return ["--shard-id", env["SLURM_NODEID"], "--set", f"distributed.num_shards={nodes}",
            "--set", "model.rendezvous_py=rendezvous_tcp", "--set", f"distributed.master_addr={master}"]


def executor(folder: str, args: argparse.Namespace, cluster: str = "slurm") -> Any:
    try:
        import submitit
    except ImportError:
        raise UsageError("--submit slurm needs submitit: pip install 'torch-playground[slurm]'") from None
    name, settings = signal_name(args.signal), parameters(args.slurm)
    try:
        found = submitit.AutoExecutor(folder=os.path.join(folder, "%j"), cluster=cluster)
    except RuntimeError as e:  # no srun on PATH
        raise UsageError(f"--submit {cluster}: {e} Submit from a machine where srun and sbatch are on PATH") from None
    if cluster == "slurm":
        extra = {k[6:]: v for k, v in settings.items() if k.startswith("slurm_") and k[6:] not in SUBMITIT_SLURM}
        settings = {k: v for k, v in settings.items() if not k.startswith("slurm_") or k[6:] in SUBMITIT_SLURM}
        settings.update(slurm_additional_parameters={**extra, "signal": f"{name}@{SIGNAL_DELAY_S}"},
                        slurm_setup=[f"export SUBMITIT_PREEMPT_SIGNAL={name}"])
    found.update_parameters(name="playground", **settings)
    return found


# submitit's own slurm_ parameters; any other --slurm key becomes an sbatch option
SUBMITIT_SLURM = {"partition", "qos", "account", "array_parallelism", "comment", "constraint", "exclude", "gres",
                  "mem", "mem_per_gpu", "mem_per_cpu", "ntasks_per_node", "cpus_per_gpu", "gpus_per_task",
                  "exclusive", "job_name", "srun_args", "use_srun", "wckey", "stderr_to_stdout"}


def submit(argv: list[str], to: Any, args: argparse.Namespace) -> Any:
    """Submit `playground argv` as a job to executor `to`, print its id and log file, and return the submitit Job."""
    job = to.submit(JobCommand(argv, signal_name(args.signal)))
    print(f"submitted job {job.job_id}: playground {' '.join(argv)}\n  log: {job.paths.stdout}", flush=True)
    return job


def without_submit_flags(argv: list[str]) -> list[str]:
    """argv minus --submit, --slurm and --signal (each with its value, as `--flag V` or `--flag=V`)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--submit", "--slurm", "--signal"):
            skip = True
        elif not arg.startswith(("--submit=", "--slurm=", "--signal=")):
            kept.append(arg)
    return kept


def command_run(args: argparse.Namespace, opts: dict) -> int:
    """`playground run ... --submit slurm`: pin the run's folder, then submit the command."""
    from playground.lab.run import create
    from playground.lab.tags import local_root, runs_root

    argv = without_submit_flags(args.argv)
    verbosity = argv[:argv.index("run")]
    root = runs_root(opts)
    to = executor(os.path.join(local_root(root), "_slurm"), args)  # bad settings fail before anything is created
    if not args.resume and not opts["output"]["checkpoint_folder"]:
        _, folder = create(opts, root)
        argv = [*verbosity, "run", "--resume", os.path.abspath(folder)]
    submit(argv, to, args)
    return 0


def command_sweep(args: argparse.Namespace, sweep: Any) -> int:
    """`playground sweep ... --submit slurm`: one job per unfinished point, each `playground run --resume`."""
    from playground.lab import status
    from playground.lab.tags import local_root

    to = executor(os.path.join(local_root(sweep.root), "_slurm"), args)  # bad settings fail before planning
    sweep.plan()
    print(f"sweep {sweep.id}: {len(sweep.points)} point(s) under {sweep.root} (bookkeeping {sweep.path})", flush=True)
    for i in range(len(sweep.tags)):
        if status.effective(sweep.status(i)) != "complete":
            submit(["run", "--resume", os.path.abspath(sweep.experiment_folder(i))], to, args)
    return 0
