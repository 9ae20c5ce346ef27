"""`playground search`: the search section checked whole, the space as Optuna suggest calls, the sampler replayed
across restarts, a torn journal repaired, pruning, and `sweep --grid` as a grid search."""
from __future__ import annotations

import json
import os

import optuna
import pytest

from lab_helpers import ROOT, run
from playground import cli
from playground.errors import OptsError
from playground.search import load_study, run_search, search_folder, space as space_lib, spec as spec_lib
from playground.search.study import build_sampler, open_storage
from test_lab import tiny_opts

optuna.logging.set_verbosity(optuna.logging.WARNING)


def search_doc(space: dict | None = None, **search) -> dict:
    """A search over the tiny MLP: 10 iterations, a test pass and a checkpoint every 5."""
    opts = tiny_opts(num_epochs=1)
    opts["output"]["checkpoint_every_iters"] = 5
    search = {"space": space or {"model_param.base_learning_rate": {"float": [0.01, 0.3], "log": True},
                                 "model_param.hidden_sizes": {"choice": [[16], [32, 16]]}},
              "objectives": [{"metric": "test_accuracy_top1", "mode": "max"}], "budget": {"trials": 3}, **search}
    return {"opts": opts, "search": search}


def write(path, doc: dict) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def errors_of(capsys, doc: dict, tmp_path, *args: str) -> list[str]:
    assert cli.main(["search", "--parameters-json", write(tmp_path / "search.json", doc), *args]) == 2
    return [line.removeprefix("playground: error: ") for line in capsys.readouterr().err.splitlines()]


def test_every_mistake_is_reported_at_once_before_anything_is_created(tmp_path, runs_root, capsys):
    doc = search_doc({"model_param.base_learing_rate": {"float": [0.1, 0.01]},
                      "model_param.momentum": {"float": [0, 0.9], "log": True},
                      "model_param.hidden_sizes": {"choice": [[16], "big"]},
                      "epoch_iter.num_epochs": {"float": [1, 3]},
                      "model_param.weight_decay": {"float": [0, 0.1], "when": {"model.optimzer": "x"}}},
                     objectives=[{"metric": "test_acc", "mode": "max"}], pruner={"type": "medain"},
                     budget={"trials": 0}, storag="x")
    assert errors_of(capsys, doc, tmp_path) == [
        "search.storag: unknown field; did you mean 'storage'?",
        "search.space.model_param.base_learing_rate: not an opt of the base opts; did you mean "
        "model_param.base_learning_rate?",
        "search.space.model_param.base_learing_rate.float: low 0.1 is above high 0.01; give [low, high]",
        "search.space.model_param.momentum.float: a log range must start above 0, got 0",
        'search.space.model_param.hidden_sizes.choice[1]: expected a list, got "big"',
        'search.space.epoch_iter.num_epochs: epoch_iter.num_epochs takes an integer ≥ 1, not any number; use '
        '{"int": [1, 3]} or "choice"',
        "search.space.model_param.weight_decay.when: model.optimzer is not an opt of the base opts nor searched; "
        "did you mean model.optimizer_py?",
        'search.objectives[0].metric: "test_acc" is recorded by no meter and is no measured cost; known: flops, '
        "learning_rate, params, samples_per_sec, secs_per_train, test_accuracy_top1, test_loss, "
        "train_accuracy_top1, train_loss, train_secs",
        "search.pruner.type: 'medain' is not a known pruner; did you mean 'median'? Known: none, median, percentile, "
        "successive_halving, hyperband, threshold, wilcoxon, or a dotted path to an optuna.pruners.BasePruner "
        "subclass",
        "search.budget.trials: expected a positive integer, got 0"]
    two = [{"metric": "test_accuracy_top1", "mode": "max"}, {"metric": "flops", "mode": "min"}]
    assert errors_of(capsys, search_doc(objectives=two, algorithm={"type": "cmaes"}), tmp_path) == [
        "search.algorithm.type: cmaes optimises one objective, and search.objectives has 2; use nsga2, tpe or "
        "random for a Pareto front, or keep one objective"]
    assert errors_of(capsys, search_doc(objectives=two, pruner={"type": "median"}), tmp_path) == [
        'search.pruner: Optuna cannot prune a study of 2 objectives (Trial.report is single-objective); set "type": '
        '"none" or keep one objective']
    never = {"model_param.nesterov": {"choice": [True, False], "when": {"model.forward_pass_py": "explicit_resnet"}}}
    assert errors_of(capsys, search_doc(never, algorithm={"type": "tpx"}), tmp_path) == [
        'search.space.model_param.nesterov.when: model.forward_pass_py is "mlp_forward" in the opts and not '
        "searched, so model_param.nesterov would never be sampled; fix the value or drop the condition",
        "search.algorithm.type: 'tpx' is not a known sampler; did you mean 'tpe'? Known: random, grid, tpe, cmaes, "
        "nsga2, nsga3, qmc, gp, bruteforce, or a dotted path to an optuna.samplers.BaseSampler subclass"]
    assert not runs_root.exists()


def test_the_readme_search_example_passes_its_checks():
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index('```json\n{"base": "mlp_synthetic.json"') + 8:]
    doc = json.loads(block[:block.index("```")])
    doc["base"] = str(ROOT / "examples" / doc["base"])
    assert spec_lib.load(doc).space["model_param.weight_decay"]["when"] == {"model_param.hidden_sizes": [128, 64]}
    for example in ("search_mlp.json", "search_resnet_pareto.json"):
        assert spec_lib.load(str(ROOT / "examples" / example)).trials in (8, 12)


def test_dry_run_checks_points_through_the_opts_checks_and_creates_nothing(tmp_path, runs_root, capsys):
    assert cli.main(["search", "--parameters-json", write(tmp_path / "s.json", search_doc()), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    search_id = spec_lib.load(str(tmp_path / "s.json")).id
    assert out[0] == f"search {search_id}: {runs_root}/_searches/{search_id}"
    assert out[out.index("3 sampled point(s) passed the opts checks:") + 1].startswith("  base_learning_rate=0.")
    # a grid point whose batch outgrows the epoch fails the ordinary checks, named by its values
    grid = search_doc({"epoch_iter.batch_per_device": {"int": [64, 704], "step": 640}}, algorithm={"type": "grid"},
                      budget={})
    assert errors_of(capsys, grid, tmp_path, "--dry-run") == [
        "point batch_per_device=704: epoch_iter.num_train_sample_per_epoch: 640 is less than one global batch "
        "(704); raise it or lower batch_per_device"]
    assert not runs_root.exists()


def test_the_space_becomes_optuna_suggestions_with_conditions_and_json_choices():
    space = {"model.forward_pass_py": {"choice": ["mlp_forward", "explicit_resnet_forward"]},
             "model_param.resnet_width": {"int": [8, 32], "step": 8,
                                          "when": {"model.forward_pass_py": "explicit_resnet_forward"}},
             "model_param.base_learning_rate": {"float": [1e-4, 1e-1], "log": True},
             "model_param.momentum": {"float": [0.5, 0.9], "step": 0.1},
             "model_param.hidden_sizes": {"choice": [[64], [128, 64], {"odd": 1}]}}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        point = space_lib.suggest(trial, space, {"model": {"forward_pass_py": "mlp_forward"}})
        resnet = point["model.forward_pass_py"] == "explicit_resnet_forward"
        assert ("model_param.resnet_width" in point) == resnet == ("model_param.resnet_width" in trial.params)
        assert point.get("model_param.resnet_width", 8) in (8, 16, 24, 32)
        assert 1e-4 <= point["model_param.base_learning_rate"] <= 1e-1
        assert round(point["model_param.momentum"], 6) in (0.5, 0.6, 0.7, 0.8, 0.9)
        assert trial.params["model_param.hidden_sizes"] == json.dumps(point["model_param.hidden_sizes"],
                                                                      sort_keys=True)
        seen.add((resnet, json.dumps(point["model_param.hidden_sizes"])))
    assert len(seen) == 6  # every branch and every choice, lists and objects decoded back
    points = space_lib.grid_points({k: space[k] for k in ("model.forward_pass_py", "model_param.resnet_width")}, {})
    assert points == [{"model.forward_pass_py": "mlp_forward"}] + [
        {"model.forward_pass_py": "explicit_resnet_forward", "model_param.resnet_width": w} for w in (8, 16, 24, 32)]


def test_a_restarted_sampler_draws_what_an_uninterrupted_one_would(tmp_path):
    """Optuna keeps no sampler state in the study: the search derives the seed from the trials so far."""
    algorithm = {"type": "tpe", "seed": 7, "n_startup_trials": 2}
    space = {"x": {"float": [-3.0, 3.0]}, "n": {"int": [1, 9]}}

    def search(path, restart_after=None) -> list[dict]:
        study = optuna.create_study(study_name="s", storage=open_storage(str(path)))
        for i in range(6):
            if i == restart_after:
                study = optuna.load_study(study_name="s", storage=open_storage(str(path)))
            study.sampler = build_sampler(algorithm, len(study.trials))
            trial = study.ask()
            point = space_lib.suggest(trial, space, {})
            study.tell(trial, (point["x"] - 1) ** 2 + point["n"])
        return [t.params for t in study.trials]

    assert search(tmp_path / "a.log") == search(tmp_path / "b.log", restart_after=3)


def test_a_journal_whose_last_record_was_cut_off_is_repaired_and_stays_readable(tmp_path):
    path = str(tmp_path / "journal.log")
    study = optuna.create_study(study_name="s", storage=open_storage(path))
    study.enqueue_trial({"x": 1.0})
    with open(path, "ab") as f:
        f.write(b'{"op_code": 5, "worker_id": "w", "trial_id": 0, "sta')  # a writer killed mid-line
    study = optuna.load_study(study_name="s", storage=open_storage(path))
    study.enqueue_trial({"x": 2.0})  # glued to the torn line, this record would make the journal unreadable
    again = optuna.load_study(study_name="s", storage=open_storage(path))
    assert [t.system_attrs["fixed_params"] for t in again.trials] == [{"x": 1.0}, {"x": 2.0}]
    assert open(path, "rb").read().endswith(b"}\n")


def test_a_bad_trial_is_pruned_after_a_checkpoint_and_recorded_as_pruned(tmp_path, runs_root):
    """A grid in order: lr 0.1 completes, then lr 0 (it cannot learn) falls below the median at its first test."""
    doc = search_doc({"model_param.base_learning_rate": {"choice": [0.1, 0.0]}}, algorithm={"type": "grid"},
                     pruner={"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0}, budget={})
    result = run("search", "--parameters-json", write(tmp_path / "s.json", doc), PLAYGROUND_RUNS=str(runs_root),
                 timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    search_id = result.stdout.split()[1].rstrip(":")
    study = load_study(search_id, str(runs_root))
    good, bad = study.trials
    assert (good.state, bad.state) == (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert study.user_attrs == {"objectives": [{"metric": "test_accuracy_top1", "mode": "max", "reduce": "last"}],
                                "space": doc["search"]["space"]}
    assert bad.user_attrs["sampled"] == {"model_param.base_learning_rate": 0.0} and bad.user_attrs["host"]
    assert bad.params == {"model_param.base_learning_rate": 0.0} and list(bad.intermediate_values) == [5]
    folder = runs_root / bad.user_attrs["tag"]
    info = json.loads((folder / "status.json").read_text())
    assert info["status"] == "pruned" and info["error"].startswith(f"pruned by the median pruner of search "
                                                                   f"{search_id} at iteration 5")
    assert info["search"] == {"id": search_id, "trial": 1, "sampled": {"model_param.base_learning_rate": 0.0}}
    assert (folder / "model_checkpoint_epoch0_iter5.pt").exists() and not (folder / "results.json").exists()
    assert len((folder / "test.csv").read_text().splitlines()) == 2  # one test pass, then it stopped
    assert len((runs_root / good.user_attrs["tag"] / "test.csv").read_text().splitlines()) == 3
    assert f"trial 1 {bad.user_attrs['tag']} base_learning_rate=0.0: pruned" in result.stdout
    saved = json.loads((runs_root / "_searches" / search_id / "search.json").read_text())
    assert saved["id"] == search_id and saved["search"]["space"] == doc["search"]["space"]


def test_a_trial_of_a_search_without_a_pruner_never_imports_optuna(tmp_path, runs_root):
    """Optuna costs each trial about 0.8 CPU-s to import; only pruning needs it in the trial's process."""
    doc = search_doc({"model_param.base_learning_rate": {"choice": [0.1]}}, algorithm={"type": "grid"}, budget={})
    result = run("search", "--parameters-json", write(tmp_path / "s.json", doc), PLAYGROUND_RUNS=str(runs_root),
                 PYTHONPROFILEIMPORTTIME="1", timeout=240)  # every process lists what it imports on its stderr
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (trial,) = load_study(result.stdout.split()[1].rstrip(":"), str(runs_root)).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE
    console = (runs_root / trial.user_attrs["tag"] / "console.txt").read_text()  # the trial process's stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in console.splitlines() if line.startswith("import time:")}
    assert "torch" in imported and "optuna" not in imported


def test_the_time_budget_and_another_storage_are_kept_where_load_study_finds_them(tmp_path, runs_root):
    doc = search_doc(budget={"trials": 5, "time_s": 1e-6})  # spent before the first trial could start
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    search_id = run_search(doc, storage=url, root=str(runs_root))
    folder = runs_root / "_searches" / search_id
    assert (folder / "storage.txt").read_text() == url + "\n" and not (folder / "journal.log").exists()
    saved = json.loads((folder / "search.json").read_text())
    assert saved["id"] == search_id and saved["opts"] == json.loads(json.dumps(doc["opts"]))
    assert saved["search"]["storage"] == url and saved["search"]["budget"]["time_s"] == 1e-6
    study = load_study(search_id, str(runs_root))
    assert study.trials == [] and study.user_attrs["space"] == doc["search"]["space"]


def test_a_search_whose_trials_keep_failing_stops_naming_their_errors(tmp_path, runs_root):
    doc = search_doc({"model_param.base_learning_rate": {"choice": [1e30]}}, algorithm={"type": "random"},
                     budget={"trials": 3, "max_failures": 2})
    doc["opts"]["output"]["handlers"] = [{"handler_py": "TerminateOnNaN"}]
    result = run("search", "--parameters-json", write(tmp_path / "s.json", doc), PLAYGROUND_RUNS=str(runs_root),
                 timeout=240)
    assert result.returncode == 1, result.stdout + result.stderr
    search_id = result.stdout.split()[1].rstrip(":")
    trials = load_study(search_id, str(runs_root)).trials
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]  # failures count against max_failures, not trials
    assert all(t.user_attrs["error"].startswith("NonFiniteLossError: ") for t in trials)
    (message,) = result.stderr.splitlines()
    assert message.startswith(f"playground: error: search {search_id}: 2 trial(s) failed in this run "
                              "(search.budget.max_failures is 2): trial 0: NonFiniteLossError: ")
    assert message.endswith("Fix the cause and re-run the same command") and "; trial 1: NonFinite" in message


def test_gpus_per_trial_beyond_the_visible_gpus_is_refused_before_anything_is_created(tmp_path, runs_root, capsys,
                                                                                       monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert errors_of(capsys, search_doc(), tmp_path, "--jobs", "2", "--gpus-per-trial", "2") == [
        "--gpus-per-trial 2 with --jobs 2 needs 4 GPU(s), and this process sees 2; lower --jobs or --gpus-per-trial"]
    assert not runs_root.exists()


def test_a_dry_run_refuses_the_jobs_and_gpus_a_real_run_refuses(tmp_path, runs_root, capsys, monkeypatch):
    assert errors_of(capsys, search_doc(), tmp_path, "--dry-run", "--jobs", "0", "--gpus-per-trial", "3") == [
        "--jobs must be at least 1, got 0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert errors_of(capsys, search_doc(), tmp_path, "--dry-run", "--gpus-per-trial", "3") == [
        "--gpus-per-trial 3 with --jobs 1 needs 3 GPU(s), and this process sees 2; lower --jobs or --gpus-per-trial"]
    assert not runs_root.exists()


def test_sweep_grid_is_a_grid_search_whose_study_holds_its_points(tmp_path, runs_root):
    opts = tiny_opts(num_epochs=1)
    result = run("sweep", "--parameters-json", write(tmp_path / "base.json", {"opts": opts}),
                 "--grid", "model_param.hidden_sizes=[8],[16]", "--jobs", "2", PLAYGROUND_RUNS=str(runs_root),
                 timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    (book,) = (runs_root / "_sweeps").glob("*.json")
    sweep = json.loads(book.read_text())
    study = load_study(sweep["id"], str(runs_root))
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert [t.user_attrs["tag"] for t in study.trials] == [p["tag"] for p in sweep["points"]]
    assert [t.user_attrs["sampled"] for t in study.trials] == [p["values"] for p in sweep["points"]]
    assert os.path.isdir(search_folder(sweep["id"], str(runs_root)))


def test_search_help_shows_report_as_an_optional_sub_command(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["search", "--help"])
    usage, _, rest = capsys.readouterr().out.partition("\n\n")
    assert exited.value.code == 0 and usage.splitlines() == [
        "usage: playground search --parameters-json JSON_OR_FILE [--jobs JOBS] [--gpus-per-trial G] [--storage URL] "
        "[--dry-run]",
        "       playground search report ID [--root ROOT] [--storage URL]"]
    assert "optional sub-command:" in rest and "positional arguments" not in rest


def test_a_search_file_needs_its_search_section(tmp_path, capsys):
    with pytest.raises(OptsError):
        spec_lib.load(search_doc(budget={"trials": "3"}))
    assert errors_of(capsys, {"opts": tiny_opts()}, tmp_path) == [
        f'{tmp_path / "search.json"}: no "search" beside the "opts"; a search is {{"opts": {{...}}, "search": '
        '{"space": ..., "objectives": ...}} (see the README\'s "Search over opts")']
