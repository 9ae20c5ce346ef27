"""The slot table and the catalogue: one list of slots, names organised by slot, maps that add and never hide."""
from __future__ import annotations

import json

import pytest

from conftest import example_opts, playground
from playground import opts as opts_lib
from playground.errors import ComponentError, OptsError
from playground.registry import catalogue, resolve
from playground.runner import prepare
from playground.slots import SLOTS, slot_of_key


def problems_of(opts: dict) -> list[str]:
    with pytest.raises(OptsError) as error:
        prepare(opts)
    return error.value.problems


def test_every_module_slot_key_is_declared_once_from_the_table():
    module_keys = [slot.key for slot in SLOTS.values() if "[]" not in slot.key]
    assert all(key in opts_lib.FRAMEWORK_OPTS for key in module_keys)
    assert slot_of_key("output.metrics[3].meter_py") == "meter" and slot_of_key("model.optimizer_py") == \
        "parameter_update"
    assert SLOTS["forward_pass"].needs == ("build_network",) and SLOTS["model"].needs == ("Experiment",)
    assert SLOTS["meter"].needs == ("reset", "update", "compute") and SLOTS["handler"].needs == ()


def test_an_unknown_forward_pass_lists_the_forward_passes_only():
    opts = example_opts()
    opts["model"]["forward_pass_py"] = "mlp_forwrd"
    (problem,) = problems_of(opts)
    assert problem.startswith("model.forward_pass_py = 'mlp_forwrd' is not in module_map.py. Did you mean "
                              "'mlp_forward'")  # first: the closest of the *_forward names
    known = problem.split("Known forward pass names: ")[1]
    assert "explicit_resnet_forward" in known and "ComputeLoss" not in known and "EarlyStopping" not in known


def test_a_name_defined_in_two_maps_is_an_error_naming_both(tmp_path, monkeypatch):
    (tmp_path / "map_a.py").write_text("MODULE_MAP = {'forward_pass': {'net': 'pkg_a.net'}}\n")
    (tmp_path / "map_b.py").write_text("MODULE_MAP = {'forward_pass': {'net': 'pkg_b.net'}}\n")
    (tmp_path / "map_c.py").write_text("MODULE_MAP = {'forward_pass': {'mlp_forward': 'pkg_c.net'}}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ComponentError, match=r"forward_pass 'net' is defined twice: in map_a and in map_b"):
        catalogue(["map_a", "map_b"])
    with pytest.raises(ComponentError, match=r"forward_pass 'mlp_forward' is defined twice: in .*module_map.py and "
                                             r"in map_c"):
        catalogue(["map_c"])  # a map never hides a built-in


def test_a_map_keyed_by_name_instead_of_slot_is_named_with_the_fix(tmp_path, monkeypatch):
    (tmp_path / "flat_map.py").write_text("MODULE_MAP = {'net': 'pkg.net'}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ComponentError, match=r"flat_map: MODULE_MAP\['net'\] is not a slot's table; MODULE_MAP is "
                                             r"keyed by slot"):
        catalogue(["flat_map"])


def test_a_module_map_in_the_working_folder_adds_names_and_hides_no_built_in(tmp_path):
    """The README's "Writing a component" leads users to write module_map.py in their folder: it must add."""
    (tmp_path / "my_net.py").write_text(
        "import torch\n\ndef build_network(exp):\n"
        "    return torch.nn.Linear(exp.opts['input']['num_features'], exp.opts['input']['num_classes'])\n")
    (tmp_path / "module_map.py").write_text("MODULE_MAP = {'forward_pass': {'my_net': 'my_net'}}\n")
    opts = example_opts()
    opts["model"]["forward_pass_py"] = "my_net"
    (tmp_path / "opts.json").write_text(json.dumps({"opts": opts}))
    result = playground("run", "--parameters-json", "opts.json", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "my_net" in result.stdout and "playground.builtins.synthetic_input" in result.stdout


def test_resolve_checks_the_slot_protocol():
    names = catalogue()
    assert resolve("output.metrics[0].meter_py", "ComputeLoss", names).__name__ == "ComputeLoss"
    with pytest.raises(ComponentError, match=r"lacks build_network; a forward pass module defines build_network"):
        resolve("model.forward_pass_py", "playground.builtins.sgd_param_update", names)
    with pytest.raises(ComponentError, match=r"is not a subclass of playground.events.EventHandler"):
        resolve("output.handlers[0].handler_py", "playground.meters.ComputeLoss", names)
