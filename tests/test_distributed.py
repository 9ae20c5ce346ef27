"""Data-parallel training through torch.distributed: on CPU with gloo, several processes on this one machine.

The end-to-end tests run the real `playground` command (and torchrun) on the MLP example, made tiny: 640
training samples per epoch, 2 epochs of 10 iterations at a global batch of 64. Every multi-process run is
compared with one single-process run of the same global batch. "Hosts" here are processes of this machine
meeting through rendezvous_filestore in a temporary folder, bound to loopback.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from playground import data, launch, workers
from playground.errors import UsageError

EXAMPLE = str(ROOT / "examples" / "mlp_synthetic.json")
TINY = {"epoch_iter.num_train_sample_per_epoch": 640, "epoch_iter.num_test_sample": 256, "epoch_iter.num_epochs": 2,
        "epoch_iter.num_train_iteration_per_test": 5, "output.plots": [], "distributed.rendezvous_timeout_s": 30}
SLOW = {"model.additional_override_py": "slow_iterations"}  # sleeps PLAYGROUND_TEST_SLEEP s per iteration
SLOW_MODULE = '''import os, time

def on_iteration_end(self):
    time.sleep(float(os.environ.get("PLAYGROUND_TEST_SLEEP", "0")))
'''
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the launcher tests read /proc and use POSIX signals")
STOPPED_AT = re.compile(r"rank (\d+): stopped by SIGTERM.* at epoch (\d+) iteration (\d+)")


# ---------------------------------------------------------------------------------------------- helpers


def run_args(folder: Path, sets: dict, *extra: str) -> list[str]:
    args = ["run", "--parameters-json", EXAMPLE]
    for key, value in {**TINY, "output.checkpoint_folder": str(folder), **sets}.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    return [*args, *extra]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    """Environment of every command: this repository and the test override importable, one thread per process
    (several "hosts" share this machine's 2 cores), runs root and gloo on loopback."""
    mods = tmp_path_factory.mktemp("mods")
    (mods / "slow_iterations.py").write_text(SLOW_MODULE)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(mods)]), "OMP_NUM_THREADS": "1",
            "PLAYGROUND_RUNS": str(tmp_path_factory.mktemp("runs")), "GLOO_SOCKET_IFNAME": "lo",
            "PLAYGROUND_TEST_SLEEP": "0"}


def start(args: list[str], env: dict, *, torchrun: int = 0, **extra_env: str) -> subprocess.Popen:
    prefix = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(torchrun)]
              if torchrun else [sys.executable])
    return subprocess.Popen([*prefix, "-m", "playground", *args], cwd=ROOT, env={**env, **extra_env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def hosts(folder: Path, sets: dict, env: dict, rendezvous: Path, **extra_env: str) -> list[subprocess.Popen]:
    """Two "hosts" (num_shards 2, one CPU process each) meeting through a FileStore in `rendezvous`."""
    sets = {"distributed.num_shards": 2, "epoch_iter.batch_per_device": 32, "model.rendezvous_py":
            "rendezvous_filestore", "distributed.rendezvous_path": str(rendezvous), **sets}
    return [start(run_args(folder, sets, "--shard-id", str(shard)), env, **extra_env) for shard in (0, 1)]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "model_final.pt", weights_only=True)["model"]


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"the run ended before writing {path.name}: {process.communicate()[0]}"
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.05)


def worker_of_rank(parent: subprocess.Popen, rank: int) -> int:
    """The pid of the worker process that `parent` (a `playground run`) started for `rank`."""
    for _ in range(200):
        children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()
        for pid in children:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if f"RANK={rank}".encode() in environ:
                return int(pid)
        time.sleep(0.05)
    raise AssertionError(f"no worker for rank {rank} under {parent.pid}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, env) -> dict[str, torch.Tensor]:
    """The final weights of one process with the whole global batch of 64."""
    folder = tmp_path_factory.mktemp("reference") / "run"
    code, output = finish(start(run_args(folder, {}), env))
    assert code == 0, output
    return weights(folder)


# ---------------------------------------------------------------------------------------------- in-process


def test_each_global_batch_is_the_same_samples_whatever_the_number_of_processes():
    order = data.epoch_order(640, 640, seed=1, epoch=3)
    one = data.train_batch_indices(order, 64, rank=0, per_rank=64, start=0, stop=10).tolist()
    two = [data.train_batch_indices(order, 64, rank=r, per_rank=32, start=0, stop=10).tolist() for r in (0, 1)]
    four = [data.train_batch_indices(order, 64, rank=r, per_rank=16, start=0, stop=10).tolist() for r in range(4)]
    for b in range(10):
        assert two[0][b] + two[1][b] == one[b]
        assert sum((four[r][b] for r in range(4)), []) == one[b]
        assert not set(two[0][b]) & set(two[1][b])


def _opts(**distributed) -> dict:
    return {"distributed": {"num_shards": 1, "num_gpus": 0, "first_gpu_id": 0, "num_cpus": 1, "first_cpu_id": 0,
                            **distributed}, "model_param": {"combine_spatial_bn": None}}


def test_placement_from_opts_shard_id_and_launcher_environment():
    assert launch.locate(_opts(), None, env={}).how == "single"
    assert launch.locate(_opts(num_cpus=4), None, env={}) == launch.Place("spawn", 0, 4, 0, 4, 0)
    assert launch.locate(_opts(num_cpus=2, num_shards=3), 2, env={}) == launch.Place("spawn", 4, 6, 0, 2, 2)
    assert launch.locate(_opts(num_shards=2), 1, env={}) == launch.Place("component", 1, 2, 0, 1, 1)
    torchrun = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "1"}
    assert launch.locate(_opts(num_cpus=2, num_shards=2), None, env=torchrun) == launch.Place("env", 3, 4, 1, 2, 1)
    ours = {**torchrun, workers.WORKER_ENV: "123"}
    assert launch.locate(_opts(num_cpus=2, num_shards=2), 1, env=ours).how == "component"


@pytest.mark.parametrize("opts, shard_id, env, message", [
    (_opts(num_shards=2), None, {}, "--shard-id (0 to 1)"),
    (_opts(num_shards=2), 2, {}, "--shard-id 2 is out of range"),
    (_opts(num_cpus=1), None, {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"},
     "--set distributed.num_cpus=2"),
    ({**_opts(num_cpus=2), "model_param": {"combine_spatial_bn": True}}, None, {}, "SyncBatchNorm runs on GPUs"),
])
def test_placement_problems_are_usage_errors_naming_the_fix(opts, shard_id, env, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        launch.locate(opts, shard_id, env=env)


def test_opts_mismatch_names_the_key_the_values_and_the_processes():
    base = {"epoch_iter": {"num_epochs": 2}, "distributed": {"rendezvous_path": "/a", "num_shards": 2}}
    other = {"epoch_iter": {"num_epochs": 3}, "distributed": {"rendezvous_path": "/b", "num_shards": 2}}
    peers = [{"rank": r, "host": h, "shard": r, "opts": launch.comparable_opts(o)}
             for r, h, o in ((0, "a", base), (1, "b", other))]
    with pytest.raises(launch.OptsMismatch) as raised:
        launch._check_same_opts(peers)
    assert str(raised.value).endswith("epoch_iter.num_epochs: 3 on rank 1 (host b, shard 1) but 2 on rank 0 "
                                      "(host a, shard 0)")  # rendezvous_path may differ between hosts
    assert raised.value.exit_code == 2


def test_watch_stops_the_other_workers_when_one_fails():
    started = time.monotonic()
    children = [subprocess.Popen(["sleep", "60"]), subprocess.Popen(["sh", "-c", "sleep 0.2; exit 3"])]
    assert workers.watch(children, grace_s=5) == 3
    assert children[0].returncode == -signal.SIGTERM and time.monotonic() - started < 5


def test_watch_lets_ranks_stopped_by_sigterm_finish_their_checkpoint():
    children = [subprocess.Popen(["sh", "-c", "exit 143"]), subprocess.Popen(["sh", "-c", "sleep 0.5; exit 143"])]
    assert workers.watch(children, grace_s=5) == 143
    assert children[1].returncode == 143  # not terminated while rank 0 was still writing


# ---------------------------------------------------------------------------------------------- whole runs


def test_two_cpu_processes_equal_one_process_with_the_same_global_batch(tmp_path, env, reference):
    folder = tmp_path / "run"
    code, output = finish(start(run_args(folder, {"distributed.num_cpus": 2, "epoch_iter.batch_per_device": 32}),
                                env))
    assert code == 0, output
    assert max_difference(weights(folder), reference) <= 1e-5
    assert "[rank 0]" in output and "[rank 1]" in output and output.count("done: results in") == 1
    log = (folder / "log.txt").read_text()
    assert "[rank 0]" in log and "[rank 1]" not in log  # rank 0 alone writes the log file
    results = json.loads((folder / "results.json").read_text())
    assert results["total_batch_size"] == 64 and results["epoch_iterations"] == 10


def test_two_hosts_through_a_filestore_equal_one_process(tmp_path, env, reference):
    folder = tmp_path / "run"
    outcomes = [finish(p) for p in hosts(folder, {}, env, tmp_path / "rendezvous")]
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    assert max_difference(weights(folder), reference) <= 1e-5
    assert "done: results in" in outcomes[0][1] and "done: results in" not in outcomes[1][1]


def test_torchrun_starts_the_workers_and_playground_does_not_spawn_again(tmp_path, env, reference):
    folder = tmp_path / "run"
    sets = {"distributed.num_cpus": 2, "epoch_iter.batch_per_device": 32}
    code, output = finish(start(run_args(folder, sets), env, torchrun=2))
    assert code == 0, output
    assert "starting 2 worker processes" not in output and output.count("done: results in") == 1
    assert output.count("joined as rank") == 2
    assert sorted(f for f in os.listdir(folder) if f.endswith(".pt")) == [
        "model_checkpoint_epoch1.pt", "model_checkpoint_epoch2.pt", "model_final.pt"]
    assert max_difference(weights(folder), reference) <= 1e-5


def test_a_killed_rank_makes_the_other_fail_and_a_rerun_resumes(tmp_path, env, reference):
    folder, rendezvous = tmp_path / "run", tmp_path / "rendezvous"
    first = hosts(folder, SLOW, env, rendezvous, PLAYGROUND_TEST_SLEEP="0.1")
    wait_for(folder / "model_checkpoint_epoch1.pt", first[0])
    first[1].kill()
    killed_at = time.monotonic()
    code, output = finish(first[0], timeout=60)
    assert code == 1 and time.monotonic() - killed_at < TINY["distributed.rendezvous_timeout_s"], output
    assert "rank 0: lost contact with the other processes" in output
    finish(first[1])
    # The FileStore of the killed attempt is still there; the re-run meets in a fresh generation of it.
    outcomes = [finish(p) for p in hosts(folder, SLOW, env, rendezvous)]
    assert [c for c, _ in outcomes] == [0, 0], outcomes
    assert "resuming from" in outcomes[0][1]
    assert max_difference(weights(folder), reference) <= 1e-5


def test_sigterm_to_one_rank_stops_every_rank_at_the_same_iteration(tmp_path, env, reference):
    folder = tmp_path / "run"
    sets = {"distributed.num_cpus": 2, "epoch_iter.batch_per_device": 32, **SLOW}
    parent = start(run_args(folder, sets), env, PLAYGROUND_TEST_SLEEP="0.1")
    rank1 = worker_of_rank(parent, 1)
    wait_for(folder / "model_checkpoint_epoch1.pt", parent)
    os.kill(rank1, signal.SIGTERM)
    code, output = finish(parent)
    assert code == 143, output
    stops = {int(rank): (int(epoch), int(iteration)) for rank, epoch, iteration in STOPPED_AT.findall(output)}
    assert stops.keys() == {0, 1} and stops[0] == stops[1], output
    epoch, iteration = stops[0]
    assert (folder / (f"model_checkpoint_epoch{epoch}_iter{iteration}.pt" if iteration else
                      f"model_checkpoint_epoch{epoch}.pt")).exists()
    if iteration:  # mid-epoch, only the same global batch continues the epoch with the same samples
        code, output = finish(start(run_args(folder, {**SLOW, "epoch_iter.batch_per_device": 32}), env))
        assert code == 2 and "with a global batch of 64, and this run's is 32" in output, output
    # Resume with another number of processes: one, with the same global batch (64 = 1 x 64).
    code, output = finish(start(run_args(folder, SLOW), env))
    assert code == 0 and f"at epoch {epoch} iteration {iteration}" in output, output
    assert max_difference(weights(folder), reference) <= 1e-5


def test_hosts_started_with_different_opts_are_told_at_rendezvous(tmp_path, env):
    folder = tmp_path / "run"
    shards = [start(run_args(folder, {"distributed.num_shards": 2, "epoch_iter.batch_per_device": 32,
                                      "distributed.rendezvous_path": str(tmp_path / "rendezvous"),
                                      "model_param.base_learning_rate": rate}, "--shard-id", str(shard)), env)
              for shard, rate in ((0, 0.1), (1, 0.2))]
    for code, output in map(finish, shards):
        assert code == 2, output
        assert ("model_param.base_learning_rate: 0.2 on rank 1 (host" in output and "but 0.1 on rank 0" in output)
    assert not folder.exists()  # nothing written before the processes agreed


def test_a_rendezvous_that_does_not_complete_names_who_is_missing(tmp_path, env):
    started = time.monotonic()
    code, output = finish(start(run_args(tmp_path / "run", {
        "distributed.num_shards": 2, "distributed.rendezvous_timeout_s": 2, "epoch_iter.batch_per_device": 32,
        "distributed.rendezvous_path": str(tmp_path / "rendezvous")}, "--shard-id", "0"), env))
    assert code == 1 and "did not complete within distributed.rendezvous_timeout_s (2 s): rank 1 (shard 1) never " \
                         "arrived" in output, output
    assert time.monotonic() - started < 30


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL data parallelism needs 2 GPUs (CUDA sees "
                    f"{torch.cuda.device_count()})")
def test_one_process_per_gpu_over_nccl_equals_one_process(tmp_path, env, reference):
    folder = tmp_path / "run"
    sets = {"distributed.num_gpus": 2, "epoch_iter.batch_per_device": 32, "model_param.cuda_nccl": True}
    code, output = finish(start(run_args(folder, sets), env))
    assert code == 0 and "(nccl," in output, output
    assert max_difference(weights(folder), reference) <= 1e-4  # GPU kernels round differently from the CPU's


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_two_shards_on_one_gpu_over_gloo(tmp_path, env, reference):
    folder = tmp_path / "run"
    sets = {"distributed.num_gpus": 1, "model_param.cuda_nccl": False}
    outcomes = [finish(p) for p in hosts(folder, sets, env, tmp_path / "rendezvous")]
    assert [c for c, _ in outcomes] == [0, 0], outcomes
    assert max_difference(weights(folder), reference) <= 1e-4
