"""The JSON Schema of the opts: generated from the declarations, kept current in examples/, and giving the same
verdict as `--dry-run` on what a schema can see."""
from __future__ import annotations

import copy
import json
import random

import pytest
from jsonschema import Draft202012Validator

from conftest import ROOT
from playground import cli, opts as opts_lib, runner, schema
from test_opts_fuzz import BASES, dry_run, mutate

SCHEMA_FILE = ROOT / "examples" / "playground.schema.json"
# Values a JSON file can hold (no NaN), shallow: what an editor sees a user type.
VALUES = (None, 0, 1, -1, 7, 2**63, 10**30, 0.5, -2.5, "", "x", "cosin", "epochs", [], [1], ["x"], [None], {},
          {"x": 1}, True, False)
# Keys whose rules involve other keys or the machine (batch arithmetic, GPUs): --dry-run's alone.
ACROSS_KEYS = {"epoch_iter.num_train_sample_per_epoch", "epoch_iter.batch_per_device", "distributed.num_gpus",
               "distributed.num_cpus", "distributed.num_shards", "distributed.first_gpu_id",
               "epoch_iter.accumulate_grad_batches", "model_param.grad_clip_norm", "model_param.grad_clip_value",
               "model.module_maps", "output.plots", "output.metrics", "output.handlers"}


def validator_for(tree: dict) -> Draft202012Validator:
    _, found, _ = runner.resolve_components(opts_lib.with_defaults(tree))
    return Draft202012Validator(schema.schema(runner.declared_opts(found)))


def test_the_examples_schema_file_is_current():
    assert SCHEMA_FILE.read_text() == schema.schema_text(), "regenerate: playground schema > " + str(SCHEMA_FILE)


@pytest.mark.parametrize("name", ["mlp_epochs_by_loss.json", "mlp_adamw_onecycle.json", "resnetdemo_cpu.yaml",
                                  "resnet50_imagenet_gpu.yaml"])  # mlp_synthetic.json keeps the seed's exact form
def test_every_example_names_the_schema_and_passes_it(name):
    path = ROOT / "examples" / name
    text = path.read_text()
    assert "playground.schema.json" in text.splitlines()[0] + text.splitlines()[-1] or \
        '"$schema": "playground.schema.json"' in text
    tree = opts_lib.load_opts(str(path))
    errors = list(Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).iter_errors(tree))
    assert not errors, [e.message for e in errors]


def test_playground_schema_covers_the_components_an_opts_file_names(tmp_path, capsys):
    assert cli.main(["schema", "--parameters-json", str(ROOT / "examples" / "mlp_synthetic.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    model_param = printed["anyOf"][0]["properties"]["model_param"]["properties"]
    assert model_param["momentum"]["type"] == ["number", "null"]  # sgd_param_update's own key
    assert "optimizer" not in model_param  # torch_recipe's: not named by this file


def test_the_schema_never_rejects_what_dry_run_accepts_on_the_fuzz_corpus(capsys):
    """No false alarm in an editor: every file --dry-run accepts passes the schema."""
    rng = random.Random(7)
    for i in range(150):
        tree = copy.deepcopy(rng.choice(BASES))
        what = [mutate(tree, rng) for _ in range(rng.choice((1, 2)))]
        code, err = dry_run(tree, capsys)
        if code == 0:
            errors = [e.message for e in validator_for(tree).iter_errors(json.loads(json.dumps(tree)))]
            assert not errors, f"mutation {i} ({what}) runs, but the schema says {errors}"


def test_schema_and_dry_run_agree_on_every_value_of_every_key_a_schema_can_judge(capsys):
    base = BASES[0]
    _, found, _ = runner.resolve_components(opts_lib.with_defaults(base))
    declared = runner.declared_opts(found)
    validator = validator_for(base)
    keys = [k for k, opt in declared.items() if opt.check is None and not k.endswith("_py") and k not in ACROSS_KEYS]
    compared = 0
    for key in keys:
        for value in VALUES:
            tree = copy.deepcopy(base)
            opts_lib.set_dotted(tree, key, copy.deepcopy(value), key)
            code, err = dry_run(tree, capsys)
            schema_ok = validator.is_valid(tree)
            assert schema_ok == (code == 0), f"{key} = {json.dumps(value)}: schema {schema_ok}, dry-run {code}: {err}"
            compared += 1
    assert compared > 300
