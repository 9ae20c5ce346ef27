"""`--submit slurm`: the job runs the same command (its folder pinned, so a requeue resumes it), the sbatch script
carries the --slurm settings and the warning signal, and multi-node jobs set the distributed opts from Slurm."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import stat

import pytest
from conftest import playground, tiny_opts, write_opts  # noqa: F401 - tiny_opts is a fixture

from playground import slurm

submitit = pytest.importorskip("submitit")

STUB_SBATCH = """#!/bin/sh
# records its arguments and the script it was given, as a real sbatch would queue it
echo "$@" > "{record}/args"
for last; do :; done
cp "$last" "{record}/script.sh"
echo "Submitted batch job 42"
"""


@pytest.fixture
def stub_sbatch(tmp_path, monkeypatch):
    bin_dir, record = tmp_path / "bin", tmp_path / "sbatch-record"
    bin_dir.mkdir()
    record.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(STUB_SBATCH.format(record=record))
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    for name in ("srun", "scontrol"):  # submitit asks `which srun` to recognise a cluster
        (bin_dir / name).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


def test_run_submits_an_sbatch_script_with_the_settings_signal_and_a_pinned_command(tmp_path, tiny_opts,
                                                                                     stub_sbatch, runs_root):
    tiny_opts["output"]["checkpoint_folder"] = ""
    path = write_opts(tmp_path, tiny_opts)
    done = playground("run", "--opts", path, "--set", "model_param.base_learning_rate=0.05", "--submit", "slurm",
                      "--slurm", "partition=gpu", "--slurm", "time=90", "--slurm", "gpus_per_node=2",
                      "--slurm", "nodes=2", "--slurm", "account=lab", "--signal", "USR1")
    assert done.returncode == 0, done.stderr
    assert "submitted job 42" in done.stdout and "42_0_log.out" in done.stdout
    script = (stub_sbatch / "script.sh").read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --gpus-per-node=2", "#SBATCH --nodes=2",
                 "#SBATCH --account=lab", "#SBATCH --signal=USR1@", "export SUBMITIT_PREEMPT_SIGNAL=USR1"):
        assert line in script, line
    # the job resumes the experiment created (queued, with the --set applied) before submitting
    (tag,) = [t for t in os.listdir(runs_root) if not t.startswith("_")]
    folder = runs_root / tag
    assert json.loads((folder / "status.json").read_text())["status"] == "queued"
    assert json.loads((folder / "opts.json").read_text())["model_param"]["base_learning_rate"] == 0.05
    pickled = next((runs_root / "_slurm" / "42").glob("*_submitted.pkl"))
    command = submitit.helpers.DelayedSubmission.load(pickled).function
    assert command.argv == ["run", "--resume", str(folder)] and command.preempt_signal == "USR1"
    assert command.checkpoint().function.argv == command.argv  # requeued as the same command


def test_sweep_submits_one_job_per_point(tmp_path, tiny_opts, stub_sbatch, runs_root):
    tiny_opts["output"]["checkpoint_folder"] = ""
    done = playground("sweep", "--opts", write_opts(tmp_path, tiny_opts),
                      "--grid", "model_param.base_learning_rate=0.1,0.01",
                      "--submit", "slurm", "--slurm", "partition=cpu")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("submitted job 42") == 2
    assert "#SBATCH --signal=TERM@" in (stub_sbatch / "script.sh").read_text()


def test_bad_slurm_setting_and_signal_are_usage_errors(tmp_path, tiny_opts, runs_root):
    path = write_opts(tmp_path, tiny_opts)
    bad = playground("run", "--opts", path, "--submit", "slurm", "--slurm", "partition")
    assert bad.returncode == 2 and "--slurm 'partition': expected KEY=VALUE" in bad.stderr
    bad = playground("run", "--opts", path, "--submit", "slurm", "--signal", "NOPE")
    assert bad.returncode == 2 and "--signal NOPE: not a signal name" in bad.stderr
    if shutil.which("srun") is None:  # this machine is no Slurm cluster
        bad = playground("run", "--opts", path, "--submit", "slurm")
        assert bad.returncode == 2 and "srun" in bad.stderr and "Submit from a machine where" in bad.stderr
    bad = playground("sweep", "--opts", path, "--grid", "model_param.base_learning_rate=0.1,0.01", "--submit",
                     "slurm", "--slurm", "=3")
    assert bad.returncode == 2 and "--slurm '=3'" in bad.stderr
    assert not (runs_root.exists() and os.listdir(runs_root)) and not (tmp_path / "run").exists()


def test_slurm_environment_sets_shard_and_meeting_point():
    env = {"SLURM_NNODES": "3", "SLURM_NODEID": "2", "SLURM_JOB_NODELIST": "gpu[07-09]"}
    assert slurm.distributed_args(env) == ["--shard-id", "2", "--set", "distributed.num_shards=3", "--set",
                                           "model.rendezvous_py=rendezvous_tcp", "--set",
                                           "distributed.master_addr=gpu07"]
    assert slurm.distributed_args({"SLURM_NNODES": "1", "SLURM_NODEID": "0"}) == []


def test_local_executor_job_runs_the_command_to_completion(tmp_path, tiny_opts):
    path = write_opts(tmp_path, tiny_opts)
    args = argparse.Namespace(slurm=["time=5"], signal="TERM")
    job = slurm.submit(["run", "--opts", path], slurm.executor(str(tmp_path / "jobs"), args, "local"), args)
    assert job.result() == 0
    folder = tmp_path / "run"
    assert json.loads((folder / "status.json").read_text())["status"] == "complete"
    assert (folder / "test.csv").exists()


def test_preempted_job_checkpoints_requeues_and_completes_the_same_experiment(tmp_path, tiny_opts):
    """submitit's preemption signal (--signal USR2) reaches the job: playground checkpoints and stops, the job
    requeues itself, and the second attempt finishes the same experiment from the checkpoint."""
    import time

    tiny_opts["epoch_iter"]["num_epochs"] = 20
    path = write_opts(tmp_path, tiny_opts)
    args = argparse.Namespace(slurm=["time=5"], signal="USR2")
    job = slurm.submit(["run", "--opts", path], slurm.executor(str(tmp_path / "jobs"), args, "local"), args)
    folder = tmp_path / "run"
    deadline = time.monotonic() + 60
    while not list(folder.glob("model_checkpoint_epoch*.pt")) and time.monotonic() < deadline:
        time.sleep(0.1)
    # Slurm's --signal reaches the job's task (submitit's process running JobCommand), the parent of playground
    playground_pid = json.loads((folder / "status.json").read_text())["pid"]
    task_pid = int(open(f"/proc/{playground_pid}/stat").read().rsplit(")", 1)[1].split()[1])
    os.kill(task_pid, signal.SIGUSR2)
    assert job.result() == 0
    info = json.loads((folder / "status.json").read_text())
    assert info["status"] == "complete"
    assert [a["status"] for a in info["attempts"]] == ["interrupted", "complete"]
