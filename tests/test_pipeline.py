"""`playground pipeline`: the whole file checked first; search, train the best trial with overrides, evaluate its
checkpoint on a named test set; a killed step resumes on re-run, and a finished pipeline does nothing."""
from __future__ import annotations

import json
import os
import signal

import pytest

from lab_helpers import ROOT, TESTS, run
from playground import cli
from playground.search import load_study
from playground.search.pipeline import Pipeline, check, load_document
from test_lab import tiny_opts


def pipeline_doc(steps: list, trials: int = 2) -> dict:
    return {"opts": tiny_opts(), "search": {
        "space": {"model_param.base_learning_rate": {"float": [0.01, 0.3], "log": True},
                  "model_param.hidden_sizes": {"choice": [[16], [32, 16]]}},
        "objectives": [{"metric": "test_accuracy_top1", "mode": "max"}],
        "algorithm": {"type": "random", "seed": 5}, "budget": {"trials": trials}}, "pipeline": steps}


def test_every_bad_step_is_named_with_its_index_and_key_before_anything_runs(tmp_path, runs_root, capsys):
    steps = [{"step": "search"}, {"step": "train", "from": "serch"},
             {"step": "train", "name": "long", "from": "search", "take": {"top_k": 0},
              "set": {"epoch_iter.num_epochs": "ten"}},
             {"step": "evaluate", "from": "long", "tkae": 1}, {"step": "fulltrain"},
             {"step": "evaluate", "name": "noisy", "from": "long", "test_set": "noisy", "set": {"input.noise": -1}}]
    doc = pipeline_doc(steps)
    doc["search"]["objectives"].append({"metric": "params", "mode": "min"})
    (tmp_path / "p.json").write_text(json.dumps(doc))
    assert cli.main(["pipeline", "--parameters-json", str(tmp_path / "p.json")]) == 2
    assert [line.removeprefix("playground: error: ") for line in capsys.readouterr().err.splitlines()] == [
        'pipeline[1].from: "serch" is not an earlier step (earlier: \'search\')',
        "pipeline[2].take.top_k: 0 is not a positive whole number; e.g. {\"top_k\": 3}",
        'pipeline[2].set: epoch_iter.num_epochs: expected an integer, got "ten"',
        "pipeline[3].tkae: not a key of the evaluate step; did you mean 'take'?",
        "pipeline[3].test_set: expected the test set's name, e.g. \"test_set\": \"holdout\" (its opts go in set)",
        'pipeline[4].step: "fulltrain" is not a step; use search, train or evaluate',
        "pipeline[5].set: input.noise: must be at least 0, got -1"]
    doc["pipeline"] = [{"step": "search"}, {"step": "train", "from": "search"}]
    (tmp_path / "p.json").write_text(json.dumps(doc))
    assert cli.main(["pipeline", "--parameters-json", str(tmp_path / "p.json")]) == 2
    assert capsys.readouterr().err == ('playground: error: pipeline[1].take: "best" ranks by one objective, and the '
                                       'search has 2; take "pareto" (the non-dominated trials)\n')
    assert not runs_root.exists()  # refused before anything was created


def test_the_pipeline_example_passes_the_checks():
    doc = load_document(str(ROOT / "examples" / "pipeline_mlp.json"))
    assert check(doc).trials == 6 and [s["step"] for s in doc["pipeline"]] == ["search", "train", "evaluate"]


def statuses(root) -> dict[str, dict]:
    return {p.name: json.loads((p / "status.json").read_text()) for p in root.iterdir() if (p / "status.json").exists()}


def test_the_pipeline_trains_the_best_trial_evaluates_it_resumes_when_killed_and_then_does_nothing(tmp_path):
    root = tmp_path / "runs"
    kill = {"handler_py": "lab_helpers.SigkillAt", "kargs": {"step": 25, "marker": str(tmp_path / "killed-once")}}
    steps = [{"step": "search"},
             {"step": "train", "name": "long", "from": "search", "take": "best",
              "set": {"epoch_iter.num_epochs": 3, "output.handlers": [kill]}},
             {"step": "evaluate", "name": "noisy", "from": "long", "test_set": "noisier", "set": {"input.noise": 5.0}},
             {"step": "evaluate", "name": "same", "from": "long", "test_set": "as trained"}]
    (tmp_path / "p.json").write_text(json.dumps(pipeline_doc(steps)))
    args = ["pipeline", "--parameters-json", str(tmp_path / "p.json")]
    first = run(*args, timeout=300, PLAYGROUND_RUNS=str(root))
    assert first.returncode == 1, first.stdout + first.stderr  # the train step's run was SIGKILLed at step 25
    assert "step 1 long: " in first.stderr and "killed" in first.stderr and "re-run" in first.stderr

    second = run(*args, timeout=300, PLAYGROUND_RUNS=str(root))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "step 0 search (search): complete, skipped" in second.stdout
    found = statuses(root)
    search_id = next(s["search"]["id"] for s in found.values() if "search" in s)
    study = load_study(search_id, root=str(root))
    best = max(study.trials, key=lambda t: t.value)
    by_step = {name: [(tag, s) for tag, s in found.items() if s.get("pipeline", {}).get("name") == name]
               for name in ("long", "noisy", "same")}
    assert len(found) == 2 + 1 + 1 + 1 and all(len(v) == 1 for v in by_step.values())
    (trained, info), = by_step["long"]
    assert info["status"] == "complete" and len(info["attempts"]) == 2  # resumed, not restarted
    assert info["pipeline"]["from"] == {"step": "search", "search": search_id, "trial": best.number,
                                        "tag": best.user_attrs["tag"]}
    opts = json.loads((root / trained / "opts.json").read_text())
    assert opts["epoch_iter"]["num_epochs"] == 3
    for key, value in best.user_attrs["sampled"].items():
        section, leaf = key.split(".")
        assert opts[section][leaf] == value
    final = json.loads((root / trained / "results.json").read_text())["final"]
    for name, noise in (("noisy", 5.0), ("same", tiny_opts()["input"]["noise"])):
        (tag, info), = by_step[name]
        assert info["pipeline"]["from"]["tag"] == trained and info["pipeline"]["from"]["trial"] == best.number
        opts = json.loads((root / tag / "opts.json").read_text())
        weights = opts["model_param"]["pretrained_model"]
        assert os.path.realpath(weights) == os.path.realpath(root / trained / "model_final.pt")
        assert opts["model"]["additional_override_py"] == "override_test_only" and opts["input"]["noise"] == noise
        assert len((root / tag / "test.csv").read_text().splitlines()) == 2  # one test pass, nothing trained
        assert not (root / tag / "train.csv").exists() or len((root / tag / "train.csv").read_text().splitlines()) < 2
    same = json.loads((root / by_step["same"][0][0] / "results.json").read_text())["final"]
    assert same == {k: final[k] for k in ("test_loss", "test_accuracy_top1")}  # the trained weights, tested again
    assert "step 3 same (evaluate on as trained):" in second.stdout

    third = run(*args, timeout=300, PLAYGROUND_RUNS=str(root))
    assert third.returncode == 0, third.stdout + third.stderr
    assert [line for line in third.stdout.splitlines() if "skipped" in line] == [
        "step 0 search (search): complete, skipped", "step 1 long (train): complete, skipped",
        "step 2 noisy (evaluate): complete, skipped", "step 3 same (evaluate): complete, skipped"]
    assert statuses(root) == found  # nothing ran, nothing was created


class PipelineFailed(Exception):
    pass


def test_a_pipeline_that_fails_asks_its_running_experiments_to_checkpoint_and_stop(runs_root, monkeypatch):
    """An error in the pipeline's own process (raised here by a SIGUSR1 that the train step's experiment sends at
    its step 3) stops that experiment as a SIGTERM to the pipeline would: it checkpoints and ends, none is left
    running."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(TESTS)]))  # the experiments find lab_helpers
    tell = {"handler_py": "lab_helpers.SignalAt", "kargs": {"step": 3, "pid": os.getpid(), "signum": signal.SIGUSR1}}
    slow = {"handler_py": "lab_helpers.SleepPerIteration", "kargs": {"secs": 0.05}}  # 50 epochs: minutes unstopped
    steps = [{"step": "search"},
             {"step": "train", "from": "search", "set": {"epoch_iter.num_epochs": 50, "output.handlers": [tell, slow]}}]

    def fail(signum, frame):
        raise PipelineFailed("the pipeline's bookkeeping failed")

    previous = signal.signal(signal.SIGUSR1, fail)
    try:
        with pytest.raises(PipelineFailed):
            Pipeline(pipeline_doc(steps, trials=1), str(runs_root)).run()
        (trained, info), = [(tag, s) for tag, s in statuses(runs_root).items() if "pipeline" in s]
    finally:
        signal.signal(signal.SIGUSR1, previous)
        for left in statuses(runs_root).values():  # before the fix: the experiment trains on, unattended
            if left["status"] == "running":
                os.kill(left["pid"], signal.SIGKILL)
    assert info["status"] == "interrupted" and [a["status"] for a in info["attempts"]] == ["interrupted"]
    assert list((runs_root / trained).glob("*.pt"))  # it checkpointed before it stopped: a re-run resumes it
