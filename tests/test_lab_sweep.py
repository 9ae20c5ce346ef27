"""`playground sweep`: grid parsing, and a 2x2 sweep that is interrupted and resumed without re-running finished
points."""
from __future__ import annotations

import json
import os
import re

import pytest

from lab_helpers import popen, run, write_opts
from playground.errors import UsageError
from playground.lab.sweep import core_groups, grid_points, parse_grid
from test_lab import main, tiny_opts


def test_grid_values_parse_like_set_and_brackets_keep_their_commas():
    grid = parse_grid(["model_param.base_learning_rate=0.1,1e-2", "model_param.hidden_sizes=[64,64],[128]",
                       "input.name=a,b", 'x.y={"k": [1, 2]},"quoted, comma"'])
    assert grid == [("model_param.base_learning_rate", [0.1, 0.01]), ("model_param.hidden_sizes", [[64, 64], [128]]),
                    ("input.name", ["a", "b"]), ("x.y", [{"k": [1, 2]}, "quoted, comma"])]
    with pytest.raises(UsageError, match="expected dotted.key=V1,V2"):
        parse_grid(["model_param.base_learning_rate"])
    with pytest.raises(UsageError, match="given twice"):
        parse_grid(["a.b=1", "a.b=2"])


def test_a_sweep_rejects_non_finite_values_and_duplicate_keys_as_run_does(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PLAYGROUND_RUNS", str(tmp_path / "runs"))
    base = json.dumps({"opts": tiny_opts()})
    assert main("sweep", "--parameters-json", base, "--grid", "model_param.base_learning_rate=NaN,0.1") == 2
    assert capsys.readouterr().err == ("playground: error: point base_learning_rate=NaN: "
                                       "model_param.base_learning_rate: nan is not a finite number; give a finite "
                                       "value\n")
    opts = tiny_opts()
    opts["model_param"]["seed"] = "SEED"
    damaged = json.dumps({"opts": opts}).replace('"num_epochs": 2', '"num_epochs": 2, "num_epochs": 3').replace(
        '"seed": "SEED"', '"seed": Infinity')
    assert damaged.count('"num_epochs":') == 2 and "Infinity" in damaged
    assert main("sweep", "--parameters-json", damaged, "--grid", "model_param.hidden_sizes=[16],[32]") == 2
    err = capsys.readouterr().err
    assert "epoch_iter.num_epochs: given twice in the file; keep one" in err
    assert "model_param.seed: inf is not a finite number" in err
    assert not (tmp_path / "runs").exists()  # refused before anything was created


def test_grid_points_are_the_cartesian_product_first_key_slowest():
    assert grid_points([("a", [1, 2]), ("b", ["x", "y"])]) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]


def test_jobs_divide_the_cores():
    groups = core_groups(2)
    cores = sorted(os.sched_getaffinity(0))
    assert len(groups) == 2 and all(groups)
    if len(cores) >= 2:
        assert sorted(c for g in groups for c in g) == cores and not set(groups[0]) & set(groups[1])


def statuses(root, tags):
    return [json.loads((root / t / "status.json").read_text()) for t in tags]


def test_a_2x2_sweep_resumes_after_an_interruption_without_rerunning_finished_points(tmp_path):
    root = tmp_path / "runs"
    opts = tiny_opts()
    opts["output"]["checkpoint_folder"] = str(tmp_path / "ignored")  # each point gets its own folder anyway
    # The third point (lr 0.05, hidden [16]) SIGTERMs the sweep at its step 13, once.
    opts["output"]["handlers"] = [{"handler_py": "lab_helpers.InterruptParentOnce",
                                   "kargs": {"step": 13, "lr": 0.05, "marker": str(tmp_path / "interrupted-once")}}]
    args = ["sweep", "--parameters-json", write_opts(tmp_path / "base.json", opts),
            "--grid", "model_param.base_learning_rate=0.1,0.05", "--grid", "model_param.hidden_sizes=[16],[32]"]
    first = popen(*args, PLAYGROUND_RUNS=str(root))
    out, err = first.communicate(timeout=300)
    assert first.returncode == 143, err + out
    (book,) = (root / "_sweeps").glob("*.json")
    sweep = json.loads(book.read_text())
    tags = [p["tag"] for p in sweep["points"]]
    assert [p["values"] for p in sweep["points"]] == [
        {"model_param.base_learning_rate": lr, "model_param.hidden_sizes": h}
        for lr in (0.1, 0.05) for h in ([16], [32])]
    assert [s["status"] for s in statuses(root, tags)] == ["complete", "complete", "interrupted", "queued"]
    assert not (tmp_path / "ignored").exists()
    finished = {t: (root / t / "status.json").read_bytes() for t in tags[:2]}
    finished_csv = {t: (root / t / "train.csv").read_bytes() for t in tags[:2]}

    second = run(*args, "--jobs", "2", PLAYGROUND_RUNS=str(root), timeout=300)
    assert second.returncode == 0, second.stderr + second.stdout
    out = second.stdout
    assert f"[1/4] {tags[0]} base_learning_rate=0.1 hidden_sizes=[16]: complete, skipped" in out
    assert f"[2/4] {tags[1]} base_learning_rate=0.1 hidden_sizes=[32]: complete, skipped" in out
    assert {t: (root / t / "status.json").read_bytes() for t in tags[:2]} == finished  # not re-run
    assert {t: (root / t / "train.csv").read_bytes() for t in tags[:2]} == finished_csv
    infos = statuses(root, tags)
    assert [i["status"] for i in infos] == ["complete"] * 4
    assert [[a["status"] for a in i["attempts"]] for i in infos] == [
        ["complete"], ["complete"], ["interrupted", "complete"], ["complete"]]
    assert all(i["sweep"]["id"] == sweep["id"] for i in infos)
    # --jobs 2: the last two points ran side by side, each with its own share of the cores
    environment = json.loads((root / tags[3] / "environment.json").read_text())
    assert environment["env"]["OMP_NUM_THREADS"] == str(len(core_groups(2)[0]))
    train = (root / tags[2] / "train.csv").read_text().splitlines()[1:]
    assert [int(line.split(",")[1]) for line in train] == list(range(1, 21))  # every x once after the resume
    table = out[out.index("tag "):].splitlines()
    assert table[0].split()[:4] == ["tag", "status", "base_learning_rate", "hidden_sizes"]
    assert [line.split()[0] for line in table[1:5]] == tags
    assert (root / "_sweeps" / f"{sweep['id']}_test_loss.png").read_bytes()[:4] == b"\x89PNG"


def test_a_point_that_completes_with_a_nan_metric_is_unscored_not_failed_and_not_rerun(tmp_path):
    root = tmp_path / "runs"
    opts = tiny_opts(num_epochs=1, num_train_sample_per_epoch=128, num_test_sample=64,
                     num_train_iteration_per_test=2)
    args = ["sweep", "--parameters-json", write_opts(tmp_path / "base.json", opts),
            "--grid", "model_param.base_learning_rate=0.1,1e30"]
    first = run(*args, PLAYGROUND_RUNS=str(root), timeout=300)
    (book,) = (root / "_sweeps").glob("*.json")
    tags = [p["tag"] for p in json.loads(book.read_text())["points"]]
    assert [s["status"] for s in statuses(root, tags)] == ["complete", "complete"], first.stderr + first.stdout
    assert first.returncode == 0, first.stderr + first.stdout
    assert re.search(rf"\[2/2\] {tags[1]} base_learning_rate=1e\+30: complete after .* s, unscored: the run "
                     "recorded no finite test_loss", first.stdout), first.stdout
    assert "failed" not in first.stdout + first.stderr
    before = {t: (root / t / "status.json").read_bytes() for t in tags}

    second = run(*args, PLAYGROUND_RUNS=str(root), timeout=300)
    assert second.returncode == 0, second.stderr + second.stdout
    assert f"[2/2] {tags[1]} base_learning_rate=1e+30: complete, skipped" in second.stdout
    assert "failed" not in second.stdout + second.stderr
    assert {t: (root / t / "status.json").read_bytes() for t in tags} == before  # neither point ran again
    labels = re.findall(r"^\[(\d+)/(\d+)\]", second.stdout, re.M)
    assert labels and all(int(k) <= int(n) == 2 for k, n in labels), second.stdout


def test_a_failed_point_rerun_keeps_its_label_among_the_points(tmp_path):
    root = tmp_path / "runs"
    opts = tiny_opts(num_epochs=1, num_train_sample_per_epoch=128, num_test_sample=32, num_train_iteration_per_test=2)
    opts["output"]["handlers"] = [{"handler_py": "TerminateOnNaN", "kargs": {}}]  # lr 1e30 fails, every time
    args = ["sweep", "--parameters-json", write_opts(tmp_path / "base.json", opts),
            "--grid", "model_param.base_learning_rate=1e30,0.1"]
    for attempt in range(2):
        done = run(*args, PLAYGROUND_RUNS=str(root), timeout=300)
        assert done.returncode == 1, done.stderr + done.stdout
        assert re.search(r"^\[1/2\] \S+ base_learning_rate=1e\+30: failed: ", done.stdout, re.M), done.stdout
        labels = re.findall(r"^\[(\d+)/(\d+)\]", done.stdout, re.M)
        assert all(int(k) <= int(n) == 2 for k, n in labels), done.stdout
    assert "[2/2]" in done.stdout and "complete, skipped" in done.stdout
    table = done.stdout[done.stdout.index("tag "):].splitlines()
    assert "search" not in table[0].split() and "trial" not in table[0].split()
