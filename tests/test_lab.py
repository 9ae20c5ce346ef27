"""The lab book: tags, what a run records (complete, failed, SIGKILLed, resumed), immutability, the repository
API and the `playground runs` tables."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch

from lab_helpers import ROOT, data_rows, popen, run, wait_for, write_opts
from playground import cli
from playground.errors import DataError, UsageError
from playground.lab import ExperimentRepository, commands, new_tag, provenance, status
from playground.lab.run import mirror_interval_s
from playground.lab.tags import TAG_RE

TIMING = ["secs_per_train", "samples_per_sec", "date"]  # measured, so they differ between any two runs


def tiny_opts(**epoch_iter) -> dict:
    """The MLP example: 10 iterations per epoch, 2 epochs, every iteration recorded, a test pass every 5
    iterations, no plots."""
    opts = json.loads((ROOT / "examples" / "mlp_synthetic.json").read_text())["opts"]
    opts["epoch_iter"].update({"num_train_sample_per_epoch": 640, "num_test_sample": 256, "num_epochs": 2,
                               "num_train_iteration_per_test": 5, **epoch_iter})
    opts["output"].update(plots=[], progress_bar=False, record_every_iters=1)
    return opts


def main(*args: str) -> int:
    return cli.main(list(args))


def lab_run(opts: dict, *sets: str) -> int:
    return main("run", "--parameters-json", json.dumps({"opts": opts}), *[a for s in sets for a in ("--set", s)])


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    """A runs root given by $PLAYGROUND_RUNS."""
    root = tmp_path / "runs"
    monkeypatch.setenv("PLAYGROUND_RUNS", str(root))
    return root


def only_experiment(root: Path) -> Path:
    (folder,) = [p for p in root.iterdir() if TAG_RE.match(p.name)]
    return folder


def test_tags_are_the_utc_minute_and_a_random_suffix_and_unique():
    before = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M")
    tags = [new_tag() for _ in range(2000)]
    after = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M")
    assert len(set(tags)) == len(tags)
    assert all(re.fullmatch(r"\d{12}-[A-Za-z0-9]{10}", t) for t in tags)
    assert {t[:12] for t in tags} <= {before, after}
    assert new_tag(dt.datetime(2026, 11, 22, 15, 30, tzinfo=dt.timezone.utc)).startswith("202611221530-")


def test_a_run_records_opts_source_environment_log_series_results_and_status(runs, tmp_path, capsys):
    opts = tiny_opts()
    opts["output"]["plots"] = [{"x": "epochs", "x_title": "epochs", "ys": ["train_loss", "test_loss"],
                                "y_title": "loss"}]
    assert lab_run(opts) == 0
    folder = only_experiment(runs)
    assert f"experiment {folder.name}: {folder}" in capsys.readouterr().out  # the tag, printed at start
    names = set(os.listdir(folder))
    assert {"opts.json", "source.json", "source.git-patch", "environment.json", "log.txt", "train.csv", "test.csv",
            "results.json", "status.json", "model_final.pt", "plot0_loss.png"} <= names
    saved = json.loads((folder / "opts.json").read_text())
    assert saved["epoch_iter"]["num_epochs"] == 2 and saved["output"]["record_every_iters"] == 1  # resolved
    source = json.loads((folder / "source.json").read_text())
    if source["git"]:  # the repository under test; a CI checkout is one too
        assert re.fullmatch(r"[0-9a-f]{40}", source["commit"]) and isinstance(source["untracked"], list)
    else:
        assert "not in a git repository" in source["note"]
    env = json.loads((folder / "environment.json").read_text())
    assert env["torch"] == torch.__version__ and env["hostname"] == status.hostname() and env["argv"]
    assert {"python", "numpy", "cuda", "gpus", "cpu"} <= env.keys()
    train = pd.read_csv(folder / "train.csv")
    assert list(train.columns[:2]) == ["epoch", "iteration"] and train.columns[-1] == "date"
    assert {"train_loss", "train_accuracy_top1", "samples_per_sec", "learning_rate"} <= set(train.columns)
    assert train["iteration"].tolist() == list(range(1, 21))  # every iteration recorded, x fractional epochs
    assert train["epoch"].tolist() == pytest.approx([i / 10 for i in range(1, 21)])
    assert pd.to_datetime(train["date"], utc=True).notna().all()
    test = pd.read_csv(folder / "test.csv")
    assert test["epoch"].tolist() == [0.5, 1.0, 1.5, 2.0] and "test_accuracy_top1" in test.columns
    info = json.loads((folder / "status.json").read_text())
    assert info["status"] == "complete" and info["tag"] == folder.name and info["error"] is None
    assert info["attempts"][0]["status"] == "complete" and info["attempts"][0]["pid"] == os.getpid()
    assert "checkpoint" in (folder / "log.txt").read_text()


def test_outside_a_git_repository_the_source_state_says_so(tmp_path):
    info, patch = provenance.source_state(str(tmp_path))
    assert patch is None and not info["git"] and "not in a git repository" in info["note"]


def test_a_failed_run_keeps_its_rows_and_log_and_records_the_error(runs, tmp_path):
    opts = tiny_opts()
    opts["model_param"]["base_learning_rate"] = 1e9  # diverges within a few steps
    opts["output"]["handlers"] = [{"handler_py": "TerminateOnNaN"}]
    assert lab_run(opts) == 1
    folder = only_experiment(runs)
    exp = ExperimentRepository(str(runs))[folder.name]
    assert exp.status == "failed" and "NonFiniteLossError" in exp.info["error"]
    train = exp["train.csv"]
    assert len(train) >= 2 and pd.isna(train["train_loss"].iloc[-1])  # the row that failed it is kept too
    assert {"opts.json", "source.json", "environment.json", "log.txt", "status.json"} <= set(exp.list_artifacts())


def test_a_sigkilled_run_keeps_every_recorded_row_and_reads_as_killed(tmp_path):
    root = tmp_path / "runs"
    opts = tiny_opts(num_epochs=10_000)  # never ends by itself
    proc = popen("run", "--parameters-json", write_opts(tmp_path / "opts.json", opts), PLAYGROUND_RUNS=str(root))
    try:
        wait_for(lambda: root.exists() and any(TAG_RE.match(p.name) for p in root.iterdir()), what="the folder")
        folder = only_experiment(root)
        wait_for(lambda: len(data_rows(folder / "train.csv")) >= 3, what="three recorded rows")
        exp = ExperimentRepository(str(root))[folder.name[:15]]  # a unique prefix works
        assert exp.status == "running" and len(exp["train.csv"]) >= 3  # read while it runs: the rows so far
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    text = (folder / "train.csv").read_text()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert all(line.count(",") == lines[0].count(",") for line in lines)
    train = exp["train.csv"]
    assert train["iteration"].tolist() == list(range(1, len(train) + 1))  # no row lost or torn before the kill
    assert exp.status == "killed" and exp.info["status"] == "running"  # inferred: its process is gone
    assert "killed" in [row for row in ExperimentRepository(str(root)).summary()["status"]]


def test_a_resumed_run_records_exactly_what_an_uninterrupted_one_does(tmp_path, monkeypatch):
    opts = tiny_opts()
    opts["output"].update(checkpoint_every_iters=4, handlers=[
        {"handler_py": "lab_helpers.SigkillAt", "kargs": {"step": 7, "marker": str(tmp_path / "killed-once")}}])
    killed_root, whole_root = tmp_path / "killed", tmp_path / "whole"
    done = run("run", "--parameters-json", write_opts(tmp_path / "opts.json", opts), PLAYGROUND_RUNS=str(killed_root))
    assert done.returncode == -signal.SIGKILL, done.stderr
    folder = only_experiment(killed_root)
    before = pd.read_csv(folder / "train.csv")
    assert before["iteration"].tolist() == list(range(1, 8))  # killed after step 7; last checkpoint at step 4

    monkeypatch.setenv("PLAYGROUND_RUNS", str(killed_root))
    assert main("run", "--resume", folder.name) == 0  # the marker exists now: no second kill
    monkeypatch.setenv("PLAYGROUND_RUNS", str(whole_root))
    assert lab_run(opts) == 0
    whole = only_experiment(whole_root)

    info = json.loads((folder / "status.json").read_text())
    assert info["status"] == "complete" and [a["status"] for a in info["attempts"]] == ["killed", "complete"]
    for name in ("train.csv", "test.csv"):
        resumed, uninterrupted = pd.read_csv(folder / name), pd.read_csv(whole / name)
        pd.testing.assert_frame_equal(resumed.drop(columns=TIMING, errors="ignore"),
                                      uninterrupted.drop(columns=TIMING, errors="ignore"))
    after = pd.read_csv(folder / "train.csv")
    assert after["date"][:4].tolist() == before["date"][:4].tolist()  # rows up to the checkpoint kept as written
    assert after["date"][4:7].tolist() != before["date"][4:7].tolist()  # rows after it dropped, then re-recorded


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}


def test_a_finished_experiment_is_never_rewritten(runs, caplog):
    assert lab_run(tiny_opts()) == 0
    folder = only_experiment(runs)
    before = snapshot(folder)
    assert main("run", "--resume", folder.name) == 0  # nothing to do
    assert lab_run(tiny_opts(), f"output.checkpoint_folder={folder}") == 0  # nor here
    assert caplog.text.count("a finished experiment is immutable, so nothing was run") == 2
    assert lab_run(tiny_opts()) == 0  # a new experiment beside it
    assert len([p for p in runs.iterdir() if TAG_RE.match(p.name)]) == 2
    assert snapshot(folder) == before


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> tuple[ExperimentRepository, list[str], Path]:
    """Three complete experiments: lr 0.1, lr 0.05, and the example's rate with hidden [32] in a checkpoint_folder
    outside the runs root (given by output.runs_root)."""
    tmp = tmp_path_factory.mktemp("three")
    root, outside = tmp / "runs", tmp / "elsewhere" / "run"
    sets = [["model_param.base_learning_rate=0.1"], ["model_param.base_learning_rate=0.05"],
            ["model_param.hidden_sizes=[32]", f"output.checkpoint_folder={outside}"]]
    tags: list[str] = []
    for extra in sets:
        assert lab_run(tiny_opts(), f"output.runs_root={root}", *extra) == 0
        (tag,) = {p.name for p in root.iterdir() if TAG_RE.match(p.name)} - set(tags)
        tags.append(tag)
    return ExperimentRepository(str(root)), tags, outside


def test_the_repository_lists_finds_and_loads_experiments(three):
    repo, tags, outside = three
    assert [e.tag for e in repo[:]] == tags and len(repo) == 3  # oldest first
    assert repo[-1].tag == tags[2] and (Path(repo.root) / tags[2]).resolve() == outside.resolve()  # the pointer
    exp = repo[tags[1][:16]]
    assert exp.tag == tags[1] and repr(exp) == f"<Experiment: {tags[1]} complete>"
    with pytest.raises(KeyError, match="is the start of 3 experiments"):
        repo[tags[0][:4]]
    with pytest.raises(KeyError, match="no experiment"):
        repo["19990101"]
    assert {"train.csv", "test.csv", "opts.json", "source.json", "status.json", "model_final.pt"} <= set(
        exp.list_artifacts())
    train = exp["train.csv"]
    assert isinstance(train, pd.DataFrame) and train.index.name == "epoch" and len(train) == 20
    assert str(train["date"].dtype).startswith("datetime64") and "iteration" in train.columns
    assert exp["opts.json"]["model_param"]["base_learning_rate"] == 0.05
    source = exp["source.json"]
    assert ("source.git-patch" in exp) == source["git"]  # recorded whenever the source is in git
    if source["git"]:  # read back as text, exactly the patch source.json describes
        patch = exp["source.git-patch"]
        assert isinstance(patch, str) and hashlib.sha256(patch.encode()).hexdigest() == source["patch_sha256"]
    weights = exp["model_final.pt"]
    assert weights["complete"] and all(isinstance(v, torch.Tensor) for v in weights["model"].values())
    with pytest.raises(KeyError, match="did you mean 'train.csv'"):
        exp["train.cvs"]


def test_meld_csv_and_diff(three):
    repo, tags, _ = three
    melded = repo.meld_csv({tags[0]: "lr 0.1", tags[1]: "lr 0.05"}, "train.csv", "train_loss")
    assert list(melded.columns) == ["lr 0.1", "lr 0.05"] and melded.index.name == "epoch" and len(melded) == 20
    pd.testing.assert_series_equal(melded["lr 0.05"], repo[tags[1]]["train.csv"]["train_loss"], check_names=False)
    assert list(repo.meld_csv([tags[2]], "test.csv", "test_loss").columns) == [tags[2]]
    with pytest.raises(KeyError, match="no column 'nope'"):
        repo.meld_csv([tags[0]], "train.csv", "nope")
    assert repo.diff(tags[0], tags[1]) == {"model_param.base_learning_rate": (0.1, 0.05)}
    differ = repo.diff(tags[0], tags[2])
    assert differ["model_param.hidden_sizes"] == ([64], [32]) and "output.checkpoint_folder" in differ


def test_runs_commands_print_tables_and_a_plot(three, capsys, tmp_path):
    repo, tags, _ = three
    assert main("runs", "list", "--root", repo.root) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:6] == ["tag", "status", "start", "duration", "model", "forward"]
    assert "test_loss" in out[0] and [line.split()[0] for line in out[1:]] == tags
    assert all(" complete " in line and "classification_model" in line for line in out[1:])
    assert main("runs", "show", tags[0][:16], "--root", repo.root) == 0
    shown = capsys.readouterr().out
    assert f"experiment {tags[0]}: complete" in shown and "train.csv" in shown and "final" in shown
    assert main("runs", "diff", tags[0], tags[1], "--root", repo.root) == 0
    assert "model_param.base_learning_rate  0.1  ->  0.05" in capsys.readouterr().out
    png = tmp_path / "loss.png"
    assert main("runs", "compare", *tags, "--metric", "test_loss", "--output", str(png), "--root", repo.root) == 0
    out = capsys.readouterr().out
    assert png.read_bytes()[:4] == b"\x89PNG" and all(t in out for t in tags) and "final test_loss" in out
    assert main("runs", "show", "nope", "--root", repo.root) == 2
    assert "no experiment 'nope'" in capsys.readouterr().err


def test_resuming_an_unknown_experiment_is_a_usage_error(runs, capsys):
    assert main("run", "--resume", "no-such-tag") == 2
    assert "--resume no-such-tag: no experiment" in capsys.readouterr().err


def test_a_damaged_json_file_is_named_and_does_not_hide_the_other_experiments(three, tmp_path, capsys, caplog,
                                                                              monkeypatch):
    repo, tags, _ = three
    root = tmp_path / "runs"
    good, bad_status, bad_opts = tags[0], tags[1], new_tag()
    for source, tag in ((tags[0], good), (tags[1], bad_status), (tags[0], bad_opts)):
        shutil.copytree(Path(repo.root) / source, root / tag)
    status_file, opts_file = root / bad_status / "status.json", root / bad_opts / "opts.json"
    for damaged in (status_file, opts_file):
        damaged.write_bytes(damaged.read_bytes()[:40])  # a write cut short

    assert main("runs", "list", "--root", str(root)) == 0
    rows = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows == {good: "complete", bad_status: "unreadable", bad_opts: "unreadable"}
    assert f"{status_file}: not valid JSON" in caplog.text and f"{opts_file}: not valid JSON" in caplog.text

    assert main("runs", "show", bad_status, "--root", str(root)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"playground: error: {status_file}: not valid JSON (") and err.count("\n") == 1
    monkeypatch.setenv("PLAYGROUND_RUNS", str(root))
    assert main("run", "--resume", bad_opts) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"playground: error: {opts_file}: not valid JSON (") and err.count("\n") == 1


def test_only_a_missing_experiment_is_a_usage_error_other_key_errors_are_bugs(three, capsys, monkeypatch):
    repo, tags, _ = three

    def broken(exp):
        return {}["attempt"]

    monkeypatch.setattr(commands, "describe", broken)
    assert main("runs", "show", tags[0], "--root", repo.root) == 1  # not exit 2 with a bare "'attempt'"
    assert "playground: error: KeyError: 'attempt'" in capsys.readouterr().err


def test_a_bad_mirror_interval_fails_only_runs_that_mirror_and_names_the_variable(runs, capsys, monkeypatch):
    listing = run("runs", "list", "--root", str(runs), PLAYGROUND_MIRROR_INTERVAL_S="ten")
    assert listing.returncode == 0 and "no experiments" in listing.stdout, listing.stderr
    for bad in ("ten", "0", "-1", "nan"):
        monkeypatch.setenv("PLAYGROUND_MIRROR_INTERVAL_S", bad)
        with pytest.raises(UsageError, match=f"PLAYGROUND_MIRROR_INTERVAL_S={bad!r}: expected a positive number"):
            mirror_interval_s()
    monkeypatch.setenv("PLAYGROUND_MIRROR_INTERVAL_S", "0.5")
    assert mirror_interval_s() == 0.5
    monkeypatch.setenv("PLAYGROUND_MIRROR_INTERVAL_S", "ten")
    assert lab_run(tiny_opts(), f"output.runs_root=memory://bad-interval-{runs.parent.name}") == 2
    assert "PLAYGROUND_MIRROR_INTERVAL_S='ten'" in capsys.readouterr().err


def test_a_record_of_the_wrong_shape_is_listed_unreadable_and_named(runs, capsys, caplog):
    now = status.now()
    good = {"status.json": {"tag": "", "status": "complete", "created": now, "started": now, "ended": now,
                            "attempts": [{"attempt": 1, "started": now, "ended": now, "status": "complete"}]},
            "opts.json": tiny_opts(), "train.csv": b"epoch,iteration,train_loss\n0.1,1,2.5\n"}
    bad = [("status.json", None), ("status.json", []), ("status.json", {**good["status.json"], "started": 5}),
           ("status.json", {**good["status.json"], "attempts": [{"attempt": 1, "ended": 5}]}),
           ("status.json", b'{"tag": "x", "sta'), ("opts.json", None), ("opts.json", []), ("opts.json", {"model": 3}),
           ("train.csv", b"\xff\xfe\x00\x81garbage\n\x90,\x91\n")]
    tags = [new_tag() for _ in range(len(bad) + 1)]
    for tag, (name, value) in zip(tags, [("", None), *bad]):
        (runs / tag).mkdir(parents=True)
        for file, content in {**good, **({name: value} if name else {})}.items():
            (runs / tag / file).write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())

    assert main("runs", "list") == 0
    rows = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows == {tag: "complete" if tag == tags[0] else "unreadable" for tag in tags}
    for tag, (name, _) in zip(tags[1:], bad):
        assert f"{runs / tag / name}: not " in caplog.text  # each one names its file
    repo = ExperimentRepository(str(runs))
    shown = repr(repo[:])  # a notebook shows the list, whatever one experiment holds
    assert shown.count("unreadable") == 5 and shown.count("complete") == 5
    with pytest.raises(DataError, match=f"{runs / tags[-1] / 'train.csv'}: not a readable CSV"):
        repo[tags[-1]]["train.csv"]
    for tag, name in ((tags[1], "status.json"), (tags[6], "opts.json")):
        assert main("runs", "show", tag) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"playground: error: {runs / tag / name}: not ") and err.count("\n") == 1
