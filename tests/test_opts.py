"""Opts loading and validation: every class of problem is reported at once, one line each, before training."""
from __future__ import annotations

import json

import pytest

from conftest import example_opts, playground, write_opts
from playground import opts as opts_lib
from playground.errors import OptsError, UsageError
from playground.runner import prepare


def problems_of(opts: dict) -> list[str]:
    with pytest.raises(OptsError) as e:
        prepare(opts)
    return e.value.problems


def test_example_is_valid_and_defaults_are_filled():
    opts, components = prepare(example_opts())
    assert opts["output"]["checkpoint_every_iters"] == 0 and opts["input"]["decode_threads"] == 0
    assert opts["model_param"]["momentum"] == 0.9  # declared by sgd_param_update's OPTS
    assert components.modules["forward_pass"].__name__ == "playground.builtins.mlp_forward"


def test_missing_mandatory_opt_names_the_key():
    opts = example_opts()
    del opts["epoch_iter"]["num_epochs"]
    del opts["model_param"]["memonger"]
    problems = problems_of(opts)
    assert any(p.startswith("epoch_iter.num_epochs: missing") for p in problems)
    assert any(p.startswith("model_param.memonger: missing") for p in problems)


def test_nullable_mandatory_opts_may_be_null_but_not_absent():
    opts = example_opts()
    assert opts["model_param"]["combine_spatial_bn"] is None
    prepare(opts)
    del opts["model_param"]["combine_spatial_bn"]
    assert any(p.startswith("model_param.combine_spatial_bn: missing") for p in problems_of(opts))


def test_wrong_types_are_reported():
    opts = example_opts()
    opts["epoch_iter"]["num_epochs"] = "ten"
    opts["model_param"]["memonger"] = 1
    opts["epoch_iter"]["batch_per_device"] = 6.5
    problems = problems_of(opts)
    assert 'epoch_iter.num_epochs: expected an integer, got "ten"' in problems
    assert "model_param.memonger: expected true or false, got 1" in problems
    assert "epoch_iter.batch_per_device: expected an integer, got 6.5" in problems


def test_one_of_parameter_update_or_optimizer_is_needed():
    opts = example_opts()
    opts["model"]["parameter_update_py"] = ""
    assert any(p.startswith("model.parameter_update_py: missing") for p in problems_of(opts))
    opts["model"]["optimizer_py"] = "sgd_param_update"
    prepare(opts)


def test_unknown_module_lists_closest_names():
    opts = example_opts()
    opts["model"]["forward_pass_py"] = "mlp_forwrd"
    (problem,) = problems_of(opts)
    assert problem.startswith("model.forward_pass_py = 'mlp_forwrd' is not in module_map.py")
    assert "Did you mean 'mlp_forward'" in problem


def test_module_lacking_its_role_function_is_named():
    opts = example_opts()
    opts["model"]["forward_pass_py"] = "playground.builtins.sgd_param_update"  # a real module, of another slot
    (problem,) = problems_of(opts)
    assert "lacks build_network" in problem and problem.startswith("model.forward_pass_py")


def test_meter_must_be_a_class():
    opts = example_opts()
    opts["output"]["metrics"][0]["meter_py"] = "playground.builtins.mlp_forward"
    assert any("output.metrics[0].meter_py" in p and "not a class" in p for p in problems_of(opts))


def test_near_miss_of_a_known_key_is_an_error_but_own_keys_pass():
    opts = example_opts()
    opts["model_param"]["base_learing_rate"] = 0.1
    opts["model_param"]["my_own_dropout"] = 0.5
    opts["my_section"] = {"anything": 1}
    problems = problems_of(opts)
    assert problems == ["model_param.base_learing_rate: not a known opt; did you mean "
                        "model_param.base_learning_rate?"]


def test_all_problems_are_reported_at_once():
    opts = example_opts()
    opts["epoch_iter"]["num_epochs"] = -1
    opts["input"]["input_name_py"] = "nope"
    opts["model_param"]["momentun"] = 0.9
    problems = problems_of(opts)
    assert len(problems) == 3, problems


def test_duplicate_keys_and_non_finite_numbers_are_caught(tmp_path):
    text = json.dumps({"opts": example_opts()})
    text = text.replace('"base_learning_rate": 0.003', '"base_learning_rate": NaN, "momentum": 0.5')
    text = text.replace('"num_epochs": 5', '"num_epochs": 5, "num_epochs": 6')
    problems = problems_of(opts_lib.load_opts(text))
    assert "model_param.base_learning_rate: nan is not a finite number; give a finite value" in problems
    assert "model_param.momentum: given twice in the file; keep one" in problems
    assert "epoch_iter.num_epochs: given twice in the file; keep one" in problems


def test_plots_must_name_known_metrics():
    opts = example_opts()
    opts["output"]["plots"][0]["ys"] = ["train_los"]
    assert any(p.startswith("output.plots[0].ys: 'train_los' is not a metric") for p in problems_of(opts))


def test_a_metric_may_not_take_the_name_of_a_column_every_run_records():
    opts = example_opts()
    opts["output"]["metrics"][0]["name"] = "learning_rate"
    assert ("output.metrics: the name 'learning_rate' is a column every run records; give the metric another name"
            in problems_of(opts))


def test_plots_may_draw_the_columns_listed_handlers_add():
    opts = example_opts()
    opts["output"]["plots"][0]["ys"] = ["test_loss", "ema_test_loss", "lr_0"]
    assert [p.split(";")[0] for p in problems_of(opts)] == [
        "output.plots[0].ys: 'ema_test_loss' is not a metric", "output.plots[0].ys: 'lr_0' is not a metric"]
    opts["output"]["handlers"] = [{"handler_py": "EMA", "kargs": {}}, {"handler_py": "LRMonitor", "kargs": {}}]
    prepare(opts)
    opts["output"]["plots"][0]["ys"] = ["emma_test_loss"]
    assert problems_of(opts) == ["output.plots[0].ys: 'emma_test_loss' is not a metric; known: learning_rate, "
                                 "samples_per_sec, secs_per_train, test_accuracy_top1, test_loss, "
                                 "train_accuracy_top1, train_loss, and what the handlers add (ema_*, lr_*)"]


def test_gpus_asked_for_where_there_are_none(monkeypatch):
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    opts = example_opts()
    opts["distributed"]["num_gpus"] = 2
    assert any(p.startswith("distributed.num_gpus") and '"num_gpus": 0' in p for p in problems_of(opts))


def test_batch_larger_than_epoch():
    opts = example_opts()
    opts["epoch_iter"]["num_train_sample_per_epoch"] = 10
    assert any(p.startswith("epoch_iter.num_train_sample_per_epoch") for p in problems_of(opts))


def test_set_parses_json_else_string():
    opts = example_opts()
    opts_lib.apply_set(opts, "epoch_iter.num_epochs=3")
    opts_lib.apply_set(opts, "model_param.hidden_sizes=[8, 8]")
    opts_lib.apply_set(opts, "output.checkpoint_folder=/tmp/a b")
    opts_lib.apply_set(opts, "new_section.deep.key=true")
    assert opts["epoch_iter"]["num_epochs"] == 3
    assert opts["model_param"]["hidden_sizes"] == [8, 8]
    assert opts["output"]["checkpoint_folder"] == "/tmp/a b"
    assert opts["new_section"] == {"deep": {"key": True}}
    with pytest.raises(UsageError, match="expected dotted.key=VALUE"):
        opts_lib.apply_set(opts, "no_equals_sign")


def test_load_accepts_seed_form_bare_tree_and_files(tmp_path):
    bare = example_opts()
    assert opts_lib.load_opts(json.dumps(bare)) == bare
    assert opts_lib.load_opts(json.dumps({"opts": bare})) == bare
    assert opts_lib.load_opts(write_opts(tmp_path, bare)) == bare
    with pytest.raises(UsageError, match="neither inline JSON nor an existing .json file"):
        opts_lib.load_opts("missing.json")
    with pytest.raises(UsageError, match="invalid JSON at line 1"):
        opts_lib.load_opts("{not json")


def test_cli_reports_problems_one_per_line_with_exit_2_and_no_traceback(tmp_path):
    opts = example_opts()
    opts["model_param"]["base_learing_rate"] = 0.1
    opts["epoch_iter"]["num_epochs"] = "x"
    result = playground("run", "--parameters-json", write_opts(tmp_path, opts))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("playground: error: ") for line in lines)
    assert "Traceback" not in result.stderr


def test_cli_usage_errors_exit_2():
    result = playground("run")
    assert result.returncode == 2 and "--parameters-json" in result.stderr and "Traceback" not in result.stderr
    result = playground("run", "--parameters-json", "{}", "--set", "oops")
    assert result.returncode == 2 and "dotted.key=VALUE" in result.stderr


def test_dry_run_prints_resolved_opts_and_components_without_training(tmp_path):
    opts = example_opts()
    opts["output"]["checkpoint_folder"] = str(tmp_path / "never")
    result = playground("run", "--parameters-json", write_opts(tmp_path, opts), "--dry-run",
                        "--set", "epoch_iter.num_epochs=7")
    assert result.returncode == 0, result.stderr
    assert '"num_epochs": 7' in result.stdout
    assert "model.forward_pass_py" in result.stdout and "playground.builtins.mlp_forward" in result.stdout
    assert "total_batch_size = 64, epoch_iterations = 100" in result.stdout
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("bad", [{"output": "oops"}, {"output": {"metrics": ["x"]}}, {"epoch_iter": []}, {"distributed": {"num_shards": 1}}])
def test_malformed_trees_are_reported_not_crashed_on(bad):
    opts = {**example_opts(), **bad}
    assert problems_of(opts)


def test_meter_and_handler_kargs_are_checked_against_the_class():
    opts = example_opts()
    opts["output"]["metrics"][1]["meter_kargs"]["topk_"] = 5
    opts["output"]["handlers"] = [{"handler_py": "EarlyStopping", "kargs": {"monitr": "test_loss"}}]
    problems = problems_of(opts)
    assert any(p.startswith("output.metrics[1].meter_kargs:") and "topk_" in p for p in problems)
    assert any(p.startswith("output.handlers[0].kargs:") and "monitr" in p for p in problems)


def test_an_error_raised_in_a_dataloader_worker_shows_as_its_own_one_line_message():
    from playground.cli import error_lines
    from playground.errors import DataError

    relayed = DataError("Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                        "last):\n  File \"x.py\", line 1, in f\nplayground.errors.DataError: data/train: 12 records "
                        "failed to decode; rebuild it")
    assert error_lines(relayed) == ["data/train: 12 records failed to decode; rebuild it"]
    assert error_lines(DataError("a\nb")) == ["a", "b"]


def test_values_outside_their_choices_and_impossible_counts_are_opts_problems():
    opts = example_opts()
    opts["model_param"]["mixed_precision"] = "fp32"
    assert any(p.startswith('model_param.mixed_precision: must be one of "", "bf16", "fp16"')
               for p in problems_of(opts))
    opts = example_opts()
    opts["distributed"]["num_shards"] = 0
    assert problems_of(opts) == ["distributed.num_shards: must be at least 1, got 0"]
    opts = example_opts()
    opts["model"]["module_maps"] = [1]
    assert problems_of(opts) == ["model.module_maps: expected a list of module names, got [1]"]


def test_meter_and_handler_kargs_values_and_handler_classes_are_checked_before_the_run():
    opts = example_opts()
    opts["output"]["metrics"][1]["meter_kargs"]["blob_name"] = ["softmax"]
    opts["output"]["handlers"] = [{"handler_py": "EarlyStopping", "kargs": {"monitor": "test_loss", "mode": "bad"}},
                                  {"handler_py": "playground.meters.ComputeLoss"}]
    problems = problems_of(opts)
    assert any(p.startswith("output.metrics[1].meter_kargs:") and "blob_name" in p for p in problems)
    assert any(p.startswith("output.handlers[0].kargs:") and "mode = 'bad'" in p for p in problems)
    assert any(p.startswith("output.handlers[1].handler_py = 'playground.meters.ComputeLoss'") and "EventHandler" in p
               for p in problems)


def test_a_typo_in_optimizer_py_is_reported_under_that_key():
    opts = example_opts()
    opts["model"].update(parameter_update_py="", optimizer_py="sgd_param_updat")
    assert any(p.startswith("model.optimizer_py = 'sgd_param_updat'") for p in problems_of(opts))


def test_a_metric_reading_a_blob_forward_does_not_return_is_a_one_line_usage_error(tmp_path):
    opts = example_opts()
    opts["output"].update(checkpoint_folder=str(tmp_path / "run"), plots=[],
                          metrics=[{"name": "b", "meter_py": "ComputeLoss", "meter_kargs": {"blob_name": "nope"},
                                    "is_train": True}])
    result = playground("run", "--parameters-json", write_opts(tmp_path, opts))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "output.metrics: 'b' reads the blob 'nope', which Experiment.forward does not return" in result.stderr


def test_a_pretrained_checkpoint_of_another_network_is_a_one_line_usage_error(tmp_path):
    opts = example_opts()
    opts["epoch_iter"]["num_epochs"] = 1
    opts["output"].update(checkpoint_folder=str(tmp_path / "small"), progress_bar=False)
    assert playground("run", "--parameters-json", write_opts(tmp_path, opts)).returncode == 0
    opts["model_param"].update(hidden_sizes=[8], pretrained_model=str(tmp_path / "small" / "model_final.pt"),
                               reset_epoch=True)
    opts["output"]["checkpoint_folder"] = str(tmp_path / "other")
    result = playground("run", "--parameters-json", write_opts(tmp_path, opts, "other.json"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{tmp_path / 'small' / 'model_final.pt'} does not fit this experiment" in result.stderr
    assert "size mismatch" in result.stderr


def test_every_list_entry_and_element_is_type_checked_like_any_key():
    opts = example_opts()
    opts["output"]["metrics"][2]["name"] = None
    opts["output"]["metrics"][3]["name"] = 5
    opts["output"]["metrics"][1]["is_train"] = "yes"
    opts["output"]["plots"][0]["ys"] = ["train_loss", 3]
    opts["output"]["plots"][1]["ys"] = 7
    opts["output"]["handlers"] = [{"handler_py": "EarlyStopping", "kargs": []}, None]
    opts["model_param"]["hidden_sizes"] = [64, "8", 0]
    problems = problems_of(opts)
    assert {"output.metrics[2].name: must not be null (The metric's column in train.csv, test.csv and results.json.)",
            "output.metrics[3].name: expected a string, got 5",
            'output.metrics[1].is_train: expected true or false, got "yes"',
            "output.plots[0].ys[1]: expected a string, got 3",
            "output.plots[1].ys: expected a list, got 7",
            "output.handlers[0].kargs: expected an object, got []",
            "output.handlers[1]: expected an object, got null",
            'model_param.hidden_sizes[1]: expected an integer, got "8"',
            "model_param.hidden_sizes[2]: must be at least 1, got 0"} <= set(problems), problems


def test_null_means_the_default_for_every_optional_key_and_field_in_a_real_run(tiny_opts, tmp_path):
    tiny_opts["output"]["metrics"][0].update(meter_kargs=None, is_train=None)
    tiny_opts["output"]["plots"][0].update(x=None, x_title=None)
    nulls = ["output.record_every_iters", "input.decode_threads", "model_param.mixed_precision", "model_param.momentum",
             "input.noise", "distributed.rendezvous_timeout_s", "output.gen_checkpoint_path_py", "input.num_classes",
             "model_param.hidden_sizes", "model_param.label_smoothing", "model_param.nesterov", "output.handlers",
             "output.checkpoint_every_iters", "output.progress_bar", "model.additional_override_py",
             "model.module_maps", "model_param.engine", "model_param.reset_epoch"]
    result = playground("run", "--parameters-json", write_opts(tmp_path, tiny_opts), "--set",
                        "model_param.seed=4294967295", *[arg for key in nulls for arg in ("--set", f"{key}=null")])
    assert result.returncode == 0, result.stderr
    saved = json.loads((tmp_path / "run" / "opts.json").read_text())
    assert {key: opts_lib.get(saved, key) for key in nulls} == {
        "output.record_every_iters": 10, "input.decode_threads": 0, "model_param.mixed_precision": "",
        "model_param.momentum": 0.9, "input.noise": 2.0, "distributed.rendezvous_timeout_s": 300,
        "output.gen_checkpoint_path_py": "gen_checkpoint_path", "input.num_classes": 10,
        "model_param.hidden_sizes": [64], "model_param.label_smoothing": 0.0, "model_param.nesterov": False,
        "output.handlers": [], "output.checkpoint_every_iters": 0, "output.progress_bar": True,
        "model.additional_override_py": "", "model.module_maps": [], "model_param.engine": "",
        "model_param.reset_epoch": True}
    assert saved["output"]["metrics"][0]["meter_kargs"] == {} and saved["output"]["metrics"][0]["is_train"] is True
    assert saved["output"]["plots"][0]["x"] == "" and (tmp_path / "run" / "model_final.pt").exists()


def test_null_or_empty_where_a_value_is_needed_names_the_key():
    opts = example_opts()
    opts["model_param"]["memonger"] = None
    opts["output"]["gen_checkpoint_path_py"] = ""
    assert problems_of(opts) == [
        "model_param.memonger: must not be null (Activation checkpointing where the forward pass supports it "
        "(Caffe2's memonger shared activation memory).)",
        'output.gen_checkpoint_path_py: must not be empty; leave it out or null for "gen_checkpoint_path"']


@pytest.mark.parametrize("assignment, problem", [
    ("model_param.base_learning_rate=1e309", "model_param.base_learning_rate: inf is not a finite number; give a "
                                             "finite value"),
    ("model_param.seed=9223372036854775808", "model_param.seed: must be at most 4294967295, got 9223372036854775808"),
    ("model_param.seed=-1", "model_param.seed: must be at least 0, got -1"),
    ("distributed.rendezvous_timeout_s=0", "distributed.rendezvous_timeout_s: must be above 0, got 0"),
    ("distributed.master_port=70000", "distributed.master_port: must be at most 65535, got 70000"),
    ("epoch_iter.num_epochs=0", "epoch_iter.num_epochs: must be at least 1, got 0"),
    ("output.record_every_iters=0", "output.record_every_iters: must be at least 1, got 0"),
    ("model_param.label_smoothing=1.5", "model_param.label_smoothing: must be at most 1, got 1.5"),
    ("model_param.momentum=1", "model_param.momentum: must be below 1, got 1"),
    ("epoch_iter.num_test_iter=18446744073709551616", "epoch_iter.num_test_iter: must be within "
                                                      "±9223372036854775807 (64 bits), got 18446744073709551616"),
])
def test_numbers_out_of_their_declared_range_are_opts_problems(assignment, problem):
    opts = example_opts()
    opts_lib.apply_set(opts, assignment)
    assert problems_of(opts) == [problem]


def opts_text(**model_param: str) -> str:
    """The example's opts as JSON text, with `model_param` values written verbatim (JSON numbers as typed)."""
    opts = example_opts()
    opts["model_param"].update({key: f"@{key}@" for key in model_param})
    text = json.dumps({"opts": opts})
    for key, raw in model_param.items():
        text = text.replace(f'"@{key}@"', raw)
    return text


def test_numbers_json_reads_as_infinite_or_cannot_read_are_refused():
    problems = problems_of(opts_lib.load_opts(opts_text(base_learning_rate="1e309")))
    assert problems == ["model_param.base_learning_rate: inf is not a finite number; give a finite value"]
    with pytest.raises(UsageError, match="--parameters-json: a number has too many digits to read"):
        opts_lib.load_opts(opts_text(seed="1" + "0" * 5000))


def nested_json(levels: int) -> str:
    return '{"k": ' * levels + "1" + "}" * levels


def test_opts_nest_at_most_32_levels_and_the_error_names_the_path():
    opts = example_opts()
    opts["model_param"]["mine"] = json.loads(nested_json(30))  # its deepest value is 32 levels down
    prepare(opts)
    opts["model_param"]["mine"] = json.loads(nested_json(31))
    assert problems_of(opts) == [f"model_param.mine{'.k' * 30}: nested more than 32 levels deep; flatten it"]
    with pytest.raises(UsageError, match="--parameters-json: nested too deeply to read; opts nest at most 32 levels"):
        opts_lib.load_opts(nested_json(100_000))


@pytest.mark.parametrize("levels, error", [
    (500, "playground: error: model_param.mine.k.k.k"),  # used to train, then fail to write any checkpoint
    (5000, "playground: error: {file}: nested too deeply to read; opts nest at most 32 levels"),  # past json's limit
])
def test_a_deeply_nested_user_opt_is_exit_2_naming_it_and_nothing_is_created(tmp_path, levels, error):
    (tmp_path / "deep.json").write_text(opts_text(mine=nested_json(levels)))
    result = playground("run", "--parameters-json", str(tmp_path / "deep.json"), "--set",
                        f"output.checkpoint_folder={tmp_path / 'run'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(error.format(file=tmp_path / "deep.json")), result.stderr
    assert len(result.stderr.splitlines()) == 1 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("assignment", ["a..b=1", "model_param..seed=5", ".seed=5", "model_param.=5"])
def test_set_with_an_empty_part_in_its_key_is_a_usage_error(assignment):
    with pytest.raises(UsageError, match="has an empty part between dots"):
        opts_lib.apply_set(example_opts(), assignment)


def test_cli_refuses_set_with_an_empty_key_part(tmp_path):
    result = playground("run", "--parameters-json", write_opts(tmp_path, example_opts()), "--set",
                        "model_param..seed=5", "--dry-run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "playground: error: --set model_param..seed: 'model_param..seed' has an empty part" in result.stderr


def test_meter_kargs_of_the_wrong_kind_are_opts_problems_before_the_run():
    opts = example_opts()
    opts["output"]["metrics"][0]["meter_kargs"]["blob_name"] = ["loss", 1]
    opts["output"]["metrics"][1]["meter_kargs"].update(topk="epochs")
    opts["output"]["metrics"][3]["meter_kargs"].update(blob_name="softmax")
    assert problems_of(opts) == [
        "output.metrics[0].meter_kargs: blob_name must be a blob name or a list of them, got ['loss', 1]",
        "output.metrics[1].meter_kargs: topk must be a positive integer, got 'epochs'",
        "output.metrics[3].meter_kargs: blob_name must name [scores, labels], got 'softmax'"]


def test_every_declared_default_is_a_valid_value_of_its_key():
    import module_map
    from playground.registry import import_path

    paths = {path for names in module_map.MODULE_MAP.values() for path in names.values()}
    tables = [opts_lib.FRAMEWORK_OPTS, *(getattr(import_path(path), "OPTS", {}) for path in paths)]
    for declared in tables:
        optional = {key for key, opt in declared.items() if opt.rule == opts_lib.OPTIONAL}
        problems = opts_lib.validate(opts_lib.with_defaults({}, declared), declared)
        bad = [p for p in problems if p.split(":")[0] in optional and not p.startswith("model.parameter_update_py: "
                                                                                          "missing; set it or")]
        assert not bad, bad
