"""`playground search report`, ExperimentRepository.search and `runs list --search`, on a real two-objective search
of the tiny MLP."""
from __future__ import annotations

import json

import pytest

from lab_helpers import run
from playground.lab import ExperimentRepository
from playground.search import load_study
from playground.search.report import trials_frame
from test_lab import tiny_opts

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def pareto_search(tmp_path_factory):
    """3 random trials scored by test accuracy (max) and parameter count (min): (runs root, id, search's stdout)."""
    folder = tmp_path_factory.mktemp("pareto")
    doc = {"opts": tiny_opts(), "search": {
        "space": {"model_param.base_learning_rate": {"float": [0.01, 0.3], "log": True},
                  "model_param.hidden_sizes": {"choice": [[16], [32, 16]]}},
        "objectives": [{"metric": "test_accuracy_top1", "mode": "max"}, {"metric": "params", "mode": "min"}],
        "algorithm": {"type": "random", "seed": 3}, "budget": {"trials": 3}}}
    (folder / "search.json").write_text(json.dumps(doc))
    result = run("search", "--parameters-json", str(folder / "search.json"), timeout=300,
                 PLAYGROUND_RUNS=str(folder / "runs"))
    assert result.returncode == 0, result.stdout + result.stderr
    return folder / "runs", result.stdout.split()[1].rstrip(":"), result.stdout


def dominated(row, others) -> bool:
    """Whether another row is at least as good on both objectives and better on one."""
    score = (row["test_accuracy_top1"], -row["params"])
    return any(min(s - t for s, t in zip(other, score)) >= 0 and other != score
               for other in [(o["test_accuracy_top1"], -o["params"]) for o in others])


def test_the_dataframe_has_a_row_per_trial_and_marks_the_non_dominated_ones(pareto_search):
    root, search_id, _ = pareto_search
    frame = ExperimentRepository(str(root)).search(search_id)
    study = load_study(search_id, root=str(root))
    assert list(frame.columns) == ["trial", "state", "tag", "model_param.base_learning_rate",
                                   "model_param.hidden_sizes", "test_accuracy_top1", "params", "pareto", "wall_s"]
    assert list(frame["trial"]) == [0, 1, 2] and set(frame["state"]) == {"COMPLETE"}
    rows = frame.to_dict("records")
    for trial, row in zip(study.trials, rows):
        assert row["tag"] == trial.user_attrs["tag"]
        assert [row["test_accuracy_top1"], row["params"]] == trial.values
        assert {k: row[k] for k in trial.user_attrs["sampled"]} == trial.user_attrs["sampled"]  # lists decoded
        assert row["wall_s"] > 0
    assert [r["pareto"] for r in rows] == [not dominated(r, rows) for r in rows] and frame["pareto"].any()
    assert frame["pareto"].dtype == bool
    one = trials_frame(_single(study))
    assert list(one["pareto"]) == [t.number == max(study.trials, key=lambda t: t.values[0]).number
                                   for t in study.trials]


def _single(study):
    """The same trials in an in-memory study of the first objective only."""
    import optuna

    single = optuna.create_study(direction="maximize")
    single.set_user_attr("objectives", study.user_attrs["objectives"][:1])
    for trial in study.trials:
        single.add_trial(optuna.trial.create_trial(params=trial.params, distributions=trial.distributions,
                                                   value=trial.values[0], user_attrs=trial.user_attrs))
    return single


def test_the_report_prints_the_table_the_front_and_where_the_pngs_are(pareto_search):
    root, search_id, search_output = pareto_search
    result = run("search", "report", search_id, PLAYGROUND_RUNS=str(root))
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    frame = ExperimentRepository(str(root)).search(search_id)
    assert out[0] == f"search {search_id}: 3 trial(s): 3 complete, 0 pruned, 0 fail, 0 running or interrupted"
    assert out[1].split() == ["trial", "state", "tag", "base_learning_rate", "hidden_sizes", "test_accuracy_top1",
                              "params", "wall", "s"]
    for line, row in zip(out[2:5], frame.to_dict("records")):
        assert line.startswith("*" if row["pareto"] else " ") and row["tag"] in line
        assert f"{row['test_accuracy_top1']:.4g}" in line
        assert json.dumps(row["model_param.hidden_sizes"], separators=(",", ":")) in line
    front = frame[frame["pareto"]]
    assert out[5] == f"Pareto front ({len(front)} trial(s), test_accuracy_top1 max, params min):"
    assert [line.split()[1].rstrip(":") for line in out[6:6 + len(front)]] == [str(t) for t in front["trial"]]
    folder = root / "_searches" / search_id
    assert out[6 + len(front)] == f"plots in {folder}:"
    pngs = ["history_test_accuracy_top1.png", "importances_test_accuracy_top1.png", "history_params.png",
            "importances_params.png", "pareto.png"]
    assert [line.strip() for line in out[7 + len(front):]] == pngs
    assert all((folder / name).read_bytes().startswith(PNG) for name in pngs)
    assert search_output.rstrip().endswith("\n".join(out[-len(pngs) - 1:]))  # `playground search` ends with it


def test_runs_list_search_shows_only_that_searchs_trials(pareto_search, tmp_path):
    root, search_id, _ = pareto_search
    tags = list(ExperimentRepository(str(root)).search(search_id)["tag"])
    result = run("runs", "list", "--search", search_id, "--root", str(root))
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()[1:]
    assert [r.split()[0] for r in rows] == tags and all(search_id in r for r in rows)
    other = run("runs", "list", "--search", "0123456789ab", "--root", str(root))
    assert other.stdout.strip() == f"no experiments of search 0123456789ab in {root}"
    missing = run("search", "report", "0123456789ab", PLAYGROUND_RUNS=str(root))
    assert missing.returncode == 2 and missing.stderr.startswith("playground: error: no search 0123456789ab in ")
