"""The runs store on S3: a run mirrored while it trains and read back with the same API, against a moto server
on loopback started by the fixture; upload failures are retried and reported, never raised."""
from __future__ import annotations

import json
import logging
import shutil

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
    assert mirror.close(backoff_s=0) == []  # retried at close: everything uploaded
    assert calls[-1].endswith("/status.json")  # status last, so a reader that sees it sees the rest
    assert mirror.fs.cat_file(f"{mirror.path}/train.csv") == b"epoch,loss\n0.1,2.0\n"

    broken = Mirror(str(tmp_path), f"memory://mirror-test-broken-{tmp_path.name}", interval_s=60)
    broken.fs.put_file = lambda local, remote: (_ for _ in ()).throw(PermissionError("access denied"))
    assert sorted(broken.start().close(tries=2, backoff_s=0)) == ["status.json", "train.csv"]
    assert "were not uploaded" in caplog.text
