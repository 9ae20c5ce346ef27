"""The runs store on S3: a run mirrored while it trains and read back with the same API, against a moto server
on loopback started by the fixture; upload failures are retried and reported, never raised. A server that stops
answering or goes away (a moto server in its own process, stopped or killed mid-run) costs a run at most
output.mirror_deadline_s after training, and `playground runs push` uploads what it left behind."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from lab_helpers import popen, wait_for, write_opts
from playground import cli
from playground.lab import ExperimentRepository, find_folder
from playground.lab.store import Mirror
from test_lab import tiny_opts

BUCKET = "lab"


@pytest.fixture(scope="module")
def s3_server():
    """An S3-compatible server on 127.0.0.1 (a free port chosen by the OS), with a bucket."""
    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed: pip install -e .[test]")
    pytest.importorskip("s3fs", reason="s3fs is not installed: pip install -e .[test]")
    import boto3

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield env
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path) -> dict:
    """The environment of a run whose runs root is s3://lab/<test>; staging in tmp_path."""
    env = {**s3_server, "PLAYGROUND_RUNS": f"s3://{BUCKET}/{tmp_path.name}",
           "PLAYGROUND_STAGING": str(tmp_path / "staging"), "PLAYGROUND_MIRROR_INTERVAL_S": "0.2"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_a_run_is_mirrored_while_it_trains_and_reads_back_from_s3(s3, tmp_path, capsys):
    opts = tiny_opts()
    opts["output"]["handlers"] = [{"handler_py": "lab_helpers.SleepPerIteration", "kargs": {"secs": 0.1}}]
    proc = popen("run", "--parameters-json", write_opts(tmp_path / "opts.json", opts), **s3)
    repo = ExperimentRepository(s3["PLAYGROUND_RUNS"])
    seen_while_running = []

    def rows_uploaded_while_running() -> bool:
        if proc.poll() is not None:
            return True
        if len(repo) and repo[0].status == "running" and "train.csv" in repo[0]:
            seen_while_running.append(len(repo[0]["train.csv"]))
        return bool(seen_while_running)

    wait_for(rows_uploaded_while_running, timeout=120, what="train.csv on S3 while the run trains")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert seen_while_running and seen_while_running[0] < 20  # uploaded in the background, before the end

    (exp,) = repo[:]
    local = tmp_path / "staging" / exp.tag
    assert exp.status == "complete" and exp.location == f"{s3['PLAYGROUND_RUNS']}/{exp.tag}"
    assert exp.list_artifacts() == sorted(p.name for p in local.iterdir())  # every file, flushed at the end
    staged = ExperimentRepository(str(tmp_path / "staging"))[exp.tag]
    pd.testing.assert_frame_equal(exp["train.csv"], staged["train.csv"])
    assert len(exp["test.csv"]) == 4 and exp["opts.json"] == json.loads((local / "opts.json").read_text())
    assert exp["model_final.pt"]["complete"]

    assert cli.main(["runs", "list"]) == 0  # the CLI reads $PLAYGROUND_RUNS = the S3 root
    listing = capsys.readouterr().out
    assert exp.tag in listing and "complete" in listing

    shutil.rmtree(local)  # another machine: resuming by tag fetches the experiment from the store first
    assert find_folder(exp.tag[:16]) == str(local) and (local / "model_final.pt").is_file()


def test_a_failed_upload_is_retried_and_reported_never_raised(tmp_path, caplog):
    pytest.importorskip("fsspec")
    (tmp_path / "train.csv").write_text("epoch,loss\n0.1,2.0\n")
    (tmp_path / "status.json").write_text("{}")
    mirror = Mirror(str(tmp_path), f"memory://mirror-test-{tmp_path.name}", interval_s=60)
    put, calls = mirror.fs.put_file, []

    def flaky(local: str, remote: str) -> None:
        calls.append(remote)
        if len(calls) <= 2:
            raise ConnectionError("network down")
        put(local, remote)

    mirror.fs.put_file = flaky
    assert set(mirror.sync()) == {"train.csv", "status.json"}  # both failed; kept for the next pass
    assert "upload of status.json" in caplog.text and "will retry" in caplog.text
    mirror.backoff_s = 0
    assert mirror.close() == []  # retried at close: everything uploaded
    assert calls[-1].endswith("/status.json")  # status last, so a reader that sees it sees the rest
    assert mirror.fs.cat_file(f"{mirror.path}/train.csv") == b"epoch,loss\n0.1,2.0\n"

    broken = Mirror(str(tmp_path), f"memory://mirror-test-broken-{tmp_path.name}", interval_s=60, deadline_s=1.5)
    broken.fs.put_file = lambda local, remote: (_ for _ in ()).throw(PermissionError("access denied"))
    broken.backoff_s = 0.1
    caplog.set_level(logging.INFO, logger="playground.lab.store")
    assert sorted(broken.start().close()) == ["status.json", "train.csv"]  # retried until the deadline
    assert "waiting for" in caplog.text  # close() says what it waits for


SERVER = """
import time
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print("%s:%d" % server.get_host_and_port(), flush=True)
time.sleep(3600)
"""
DEADLINE_S = 3


class S3Process:
    """A moto S3 server with a bucket, on 127.0.0.1, in a process of its own: a test can stop it (SIGSTOP: it
    accepts connections and never answers) or kill it (connections refused) while a run uploads to it."""

    def __init__(self):
        import boto3

        self.proc = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        endpoint = f"http://{self.proc.stdout.readline().strip()}"
        self.env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
        self.client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                                   aws_secret_access_key="testing", region_name="us-east-1")
        self.client.create_bucket(Bucket=BUCKET)

    def objects(self, prefix: str) -> dict[str, bytes]:
        """Every object under `prefix`/, by name relative to it."""
        listed = self.client.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/").get("Contents", [])
        return {o["Key"][len(prefix) + 1:]: self.client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
                for o in listed}

    def close(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def s3_process():
    pytest.importorskip("moto.server", reason="moto[server] is not installed: pip install -e .[test]")
    pytest.importorskip("s3fs", reason="s3fs is not installed: pip install -e .[test]")
    servers = [S3Process()]
    yield servers  # a test that kills the server appends the one it starts next
    for server in servers:
        server.close()


def run_env(server: S3Process, tmp_path: Path) -> dict:
    return {**server.env, "PLAYGROUND_RUNS": f"s3://{BUCKET}/{tmp_path.name}",
            "PLAYGROUND_STAGING": str(tmp_path / "staging"), "PLAYGROUND_MIRROR_INTERVAL_S": "0.2"}


def run_while_the_server_fails(server: S3Process, tmp_path: Path, signum: int) -> tuple[str, list[str], str]:
    """`playground run` (mirror_deadline_s = DEADLINE_S) that sends `signum` to the server at step 3 of 20 and
    trains on; checks it exits non-zero within the deadline of training's end, having said what it waited for.
    Returns (tag, the files its error names as not in the store, the error line)."""
    opts = tiny_opts()
    opts["output"]["mirror_deadline_s"] = DEADLINE_S
    opts["output"]["handlers"] = [
        {"handler_py": "lab_helpers.SignalAt", "kargs": {"step": 3, "pid": server.proc.pid, "signum": signum}},
        {"handler_py": "lab_helpers.SleepPerIteration", "kargs": {"secs": 0.1}}]
    proc = popen("run", "--parameters-json", write_opts(tmp_path / "opts.json", opts), **run_env(server, tmp_path))
    lines, trained = [], []

    def read_stderr() -> None:
        for line in proc.stderr:
            lines.append(line)
            if "done: results in" in line:
                trained.append(time.monotonic())

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"`playground run` still running 90 s after it started; stderr:\n{''.join(lines)[-3000:]}")
    exited = time.monotonic()
    reader.join(10)
    stderr = "".join(lines)
    assert proc.returncode == 1, stderr
    assert trained and exited - trained[0] < DEADLINE_S + 10, stderr  # the deadline, and the process's exit
    assert "waiting for" in stderr and f"of {DEADLINE_S} s (output.mirror_deadline_s)" in stderr
    (error,) = [line for line in lines if line.startswith("playground: error:")]
    tag = proc.stdout.read().split("experiment ", 1)[1].split(":", 1)[0]
    assert f"did not reach s3://{BUCKET}/{tmp_path.name}/{tag} within {DEADLINE_S} s" in error
    assert f"`playground runs push {tag}`" in error
    named = error.split("(output.mirror_deadline_s): ", 1)[1].split("; they are safe in", 1)[0].split(", ")
    local = tmp_path / "staging" / tag
    assert json.loads((local / "status.json").read_text())["status"] == "complete"  # training's result is safe
    assert "status.json" in named and set(named) <= {p.name for p in local.iterdir()}
    return tag, named, error


def local_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def use(server: S3Process, tmp_path: Path, monkeypatch) -> None:
    """Point this process at `server`, as run_env points a subprocess."""
    import s3fs

    for key, value in run_env(server, tmp_path).items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()  # an instance keeps the endpoint it was made with


def test_a_stopped_server_costs_a_run_its_deadline_and_runs_push_uploads_what_was_left(s3_process, tmp_path,
                                                                                         monkeypatch, capsys):
    server = s3_process[0]
    tag, named, _ = run_while_the_server_fails(server, tmp_path, signal.SIGSTOP)
    use(server, tmp_path, monkeypatch)
    assert cli.main(["runs", "push", tag[:14]]) == 1  # still stopped; a prefix of the tag is enough
    still_down = capsys.readouterr().err
    assert "did not reach" in still_down and "status.json" in still_down.rsplit("(output.mirror_deadline_s): ")[1]

    server.proc.send_signal(signal.SIGCONT)
    local = local_files(tmp_path / "staging" / tag)
    before = server.objects(f"{tmp_path.name}/{tag}")
    assert {n for n in local if before.get(n) != local[n]} <= set(named)  # no file left out of the error

    assert cli.main(["runs", "push", tag]) == 0
    assert f"pushed {len(local)} file(s) of {tag}" in capsys.readouterr().out
    assert server.objects(f"{tmp_path.name}/{tag}") == local  # every file, as trained
    exp = ExperimentRepository(os.environ["PLAYGROUND_RUNS"])[tag]
    assert exp.status == "complete" and exp.list_artifacts() == sorted(local)


def test_a_refused_connection_costs_a_run_its_deadline_too(s3_process, tmp_path, monkeypatch, capsys):
    tag, _, _ = run_while_the_server_fails(s3_process[0], tmp_path, signal.SIGKILL)
    s3_process.append(S3Process())  # a new, empty server (moto keeps objects in memory)
    use(s3_process[1], tmp_path, monkeypatch)
    assert cli.main(["runs", "push", "1999"]) == 2 and "no experiment '1999'" in capsys.readouterr().err
    assert cli.main(["runs", "push", tag]) == 0, capsys.readouterr().err
    assert s3_process[1].objects(f"{tmp_path.name}/{tag}") == local_files(tmp_path / "staging" / tag)


def test_a_mirror_pass_against_a_stopped_server_ends_at_its_request_timeout(s3_process, tmp_path, monkeypatch):
    server = s3_process[0]
    use(server, tmp_path, monkeypatch)
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("train.csv", "status.json"):
        (folder / name).write_text("1\n")
    mirror = Mirror(str(folder), f"s3://{BUCKET}/{tmp_path.name}", interval_s=60, deadline_s=3)
    assert mirror.sync() == []
    for name in ("train.csv", "status.json"):
        (folder / name).write_text("2\n")
        os.utime(folder / name, ns=(time.time_ns() + 10**9,) * 2)  # a new signature even on coarse clocks
    server.proc.send_signal(signal.SIGSTOP)
    result = []
    attempt = threading.Thread(target=lambda: result.append(mirror.sync()), daemon=True)
    attempt.start()
    attempt.join(30)
    assert result == [["train.csv", "status.json"]]  # train.csv timed out; the rest waits for the next pass
    server.proc.send_signal(signal.SIGCONT)
    assert mirror.sync() == []
    assert server.objects(tmp_path.name) == {"train.csv": b"2\n", "status.json": b"2\n"}
