"""YAML opts files (read as strictly as JSON, YAML 1.2 core-schema types) and "base" inheritance, for JSON and YAML
alike: merged before validation, printed by --dry-run, recorded in opts.json."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import EXAMPLE, ROOT, playground
from playground.errors import OptsError, UsageError
from playground.opts import load_opts
from playground.opts_tree import parse_yaml
from playground.runner import prepare
from test_lab import main, only_experiment, tiny_opts

MLP = EXAMPLE.as_posix()


def problems_of(opts: dict) -> list[str]:
    with pytest.raises(OptsError) as e:
        prepare(opts)
    return e.value.problems


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_yaml_scalars_have_core_schema_types_not_yaml_1_1_surprises():
    tree = parse_yaml("a: no\nb: off\nc: yes\nd: on\ne: 1e-4\nf: 0755\ng: 1:30\nh: 0o17\ni: 0x1F\nj: ~\nk:\n"
                      "l: True\nm: 2001-12-14\nn: 1_000\no: '0755'\np: [1, 2.5, .5, x]\n", "t.yaml")
    assert tree == {"a": "no", "b": "off", "c": "yes", "d": "on", "e": 0.0001, "f": 755, "g": "1:30", "h": 15,
                    "i": 31, "j": None, "k": None, "l": True, "m": "2001-12-14", "n": "1_000", "o": "0755",
                    "p": [1, 2.5, 0.5, "x"]}
    assert [type(tree[k]) for k in "efl"] == [float, int, bool]


@pytest.mark.parametrize("text, message", [
    ("x: !!timestamp 2001-12-14", "line 1 column 4: could not determine a constructor for the tag"),
    ("x: !!python/object:os.system a", "could not determine a constructor"),
    ("1: a", "line 1 column 1: key 1 is not a string; quote it"),
    ("x: !!float abc", "'abc' is not a number"),
    ("x: [1", "line 1 column 6: while parsing a flow sequence; expected ',' or ']'"),
    ("a: 1\n---\nb: 2", "line 2 column 1"),
])
def test_yaml_beyond_json_or_broken_is_a_usage_error_with_its_line(text, message):
    with pytest.raises(UsageError, match="^t.yaml: invalid YAML") as e:
        parse_yaml(text, "t.yaml")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_yaml_keys_given_twice_nan_inf_and_no_are_reported_by_validation_naming_the_key(tmp_path):
    path = write(tmp_path / "opts.yaml", f"base: {MLP}\nepoch_iter:\n  num_epochs: 3\n  num_epochs: 4\n"
                                         "model_param:\n  base_learning_rate: .nan\n  momentum: -.inf\n"
                                         "output:\n  progress_bar: no\n")
    problems = problems_of(load_opts(path))
    assert "epoch_iter.num_epochs: given twice in the file; keep one" in problems
    assert "model_param.base_learning_rate: nan is not a finite number; give a finite value" in problems
    assert "model_param.momentum: -inf is not a finite number; give a finite value" in problems
    assert 'output.progress_bar: expected true or false, got "no"' in problems
    result = playground("run", "--opts", path, "--dry-run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "playground: error: epoch_iter.num_epochs: given twice in the file; keep one" in result.stderr


def test_a_sweep_reads_yaml_as_strictly(tmp_path, capsys):
    path = write(tmp_path / "base.yml", f"base: {MLP}\nepoch_iter: {{num_epochs: 2, num_epochs: 3}}\n")
    assert main("sweep", "--opts", path, "--grid", "model_param.hidden_sizes=[16],[32]") == 2
    assert "epoch_iter.num_epochs: given twice in the file; keep one" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_bases_merge_objects_recursively_replace_lists_and_apply_in_order(tmp_path, monkeypatch):
    write(tmp_path / "common" / "model.json", json.dumps({"opts": {"model_param": {"hidden_sizes": [64, 64],
                                                                                   "seed": 7, "momentum": 0.5}}}))
    write(tmp_path / "common" / "optim.yaml", "model_param:\n  momentum: 0.8\n  base_learning_rate: 0.01\n")
    write(tmp_path / "exp" / "child.yaml", f"base: [{MLP}, ../common/model.json, ../common/optim.yaml]\n"
                                           "model_param:\n  hidden_sizes: [8]\n  base_learning_rate: 0.02\n")
    monkeypatch.chdir(tmp_path / "common")  # bases are relative to the file naming them, not to the current folder
    opts = load_opts("../exp/child.yaml")
    expected = json.loads(EXAMPLE.read_text())["opts"]
    expected["model_param"].update(hidden_sizes=[8], seed=7, momentum=0.8, base_learning_rate=0.02)
    assert opts == expected
    assert list(opts) == list(expected) and list(opts["model_param"])[:3] == ["seed", "pretrained_model", "reset_epoch"]


def test_inline_json_bases_are_relative_to_the_current_folder(tmp_path, monkeypatch):
    write(tmp_path / "b.yaml", "opts: {epoch_iter: {num_epochs: 9}, extra: {k: [1]}}\n")
    monkeypatch.chdir(tmp_path)
    assert load_opts('{"base": "b.yaml", "extra": {"k": [2, 3]}}') == {"epoch_iter": {"num_epochs": 9},
                                                                      "extra": {"k": [2, 3]}}


def test_base_cycles_are_one_line_usage_errors_naming_the_files(tmp_path):
    a = write(tmp_path / "a.yaml", "base: sub/b.json\nx: 1\n")
    write(tmp_path / "sub" / "b.json", '{"base": ["c.yaml"]}')
    write(tmp_path / "sub" / "c.yaml", "base: ../a.yaml\n")
    with pytest.raises(UsageError, match=r"bases form a cycle \(.*a.yaml -> .*sub/b.json -> .*sub/c.yaml -> "
                                         r".*a.yaml\); remove one"):
        load_opts(a)
    me = write(tmp_path / "me.yaml", "base: me.yaml\n")
    with pytest.raises(UsageError, match=r"me.yaml: bases form a cycle \(.*me.yaml -> .*me.yaml\)"):
        load_opts(me)
    result = playground("run", "--opts", a, "--dry-run")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "bases form a cycle" in result.stderr


def test_a_missing_or_malformed_base_is_a_usage_error_naming_both_files(tmp_path):
    child = write(tmp_path / "child.yaml", "base: [gone.yaml]\n")
    with pytest.raises(UsageError, match=r"child.yaml: base 'gone.yaml' does not exist \(looked for .*gone.yaml\)"):
        load_opts(child)
    result = playground("run", "--parameters-json", child, "--dry-run")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "'gone.yaml' does not exist" in result.stderr
    with pytest.raises(UsageError, match='"base" must be a file name or a list of them'):
        load_opts(write(tmp_path / "bad.yaml", "base: 3\n"))
    (tmp_path / "latin1.yaml").write_bytes(b"x: caf\xe9\n")
    with pytest.raises(UsageError, match=r"latin1.yaml: not UTF-8 text \(byte 6\); save it as UTF-8"):
        load_opts(write(tmp_path / "child2.yaml", "base: latin1.yaml\n"))
    with pytest.raises(UsageError, match="neither inline JSON nor an existing .json file, .yaml or .yml file"):
        load_opts(str(tmp_path / "missing.yaml"))


def test_the_merged_tree_is_what_dry_run_prints_and_opts_json_records(runs_root, tmp_path):
    write(tmp_path / "base.json", json.dumps({"opts": tiny_opts()}))
    child = write(tmp_path / "child.yaml", "base: base.json\nmodel_param: {hidden_sizes: [12], seed: 5}\n")
    result = playground("run", "--opts", child, "--dry-run")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout.split("resolved opts:\n", 1)[1].split("\n\ncomponents:", 1)[0])
    assert printed["model_param"]["hidden_sizes"] == [12] and printed["model_param"]["seed"] == 5
    assert printed["epoch_iter"]["num_epochs"] == 2 and printed["model_param"]["base_learning_rate"] == 0.003
    assert main("run", "--opts", child) == 0
    saved = json.loads((only_experiment(runs_root) / "opts.json").read_text())
    assert saved == printed and "base" not in saved


@pytest.mark.parametrize("name", ["resnetdemo_cpu", "resnet50_imagenet_gpu"])
def test_converted_examples_resolve_exactly_as_their_json_did(name):
    """tests/resnet_examples_as_json.json holds the examples' opts as they were in JSON before sharing a base."""
    before = json.loads((ROOT / "tests" / "resnet_examples_as_json.json").read_text())[name]
    after = load_opts(str(ROOT / "examples" / f"{name}.yaml"))
    assert json.dumps(after, sort_keys=True) == json.dumps(before, sort_keys=True)  # types too: 1 is not 1.0
    for tree in (before, after):
        tree["distributed"]["num_gpus"] = 0  # the GPU recipe checks out here too
    resolved = [json.dumps(prepare(tree)[0], sort_keys=True) for tree in (before, after)]
    assert resolved[0] == resolved[1]
