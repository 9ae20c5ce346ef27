"""Plugins: an installed package adds component names through the `playground.components` entry-point group.

Each test installs real distributions (a `.dist-info` folder with entry_points.txt on sys.path, which is what pip
writes) and runs the real command, so discovery goes through importlib.metadata as it does after `pip install`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, example_opts

NET = ("import torch\n\ndef build_network(exp):\n"
       "    return torch.nn.Linear(exp.opts['input']['num_features'], exp.opts['input']['num_classes'])\n")


def install(site: Path, dist: str, package: str, names: dict[str, dict[str, str]]) -> None:
    """Write package `package` (a MODULE_MAP of `names`, and the module my_net) into `site`, with the metadata
    pip writes for the distribution `dist`, registering the map as the plugin `package`."""
    (site / package).mkdir(parents=True)
    (site / package / "__init__.py").write_text("")
    (site / package / "my_net.py").write_text(NET)
    (site / package / "module_map.py").write_text(f"MODULE_MAP = {names!r}\n")
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[playground.components]\n{package} = {package}.module_map\n")


def dry_run(tmp_path: Path, site: Path, forward_pass: str) -> subprocess.CompletedProcess:
    opts = example_opts()
    opts["model"]["forward_pass_py"] = forward_pass
    (tmp_path / "opts.json").write_text(json.dumps({"opts": opts}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "playground", "run", "--parameters-json", "opts.json", "--dry-run"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_an_installed_plugin_makes_its_names_resolvable(tmp_path):
    site = tmp_path / "site"
    install(site, "my-playground-ext", "my_ext", {"forward_pass": {"plugin_net": "my_ext.my_net"}})
    result = dry_run(tmp_path, site, "plugin_net")
    assert result.returncode == 0, result.stderr
    assert "my_ext.my_net" in result.stdout


def test_a_name_two_plugins_define_is_an_error_naming_both(tmp_path):
    site = tmp_path / "site"
    install(site, "ext-a", "ext_a", {"forward_pass": {"plugin_net": "ext_a.my_net"}})
    install(site, "ext-b", "ext_b", {"forward_pass": {"plugin_net": "ext_b.my_net"}})
    result = dry_run(tmp_path, site, "plugin_net")
    assert result.returncode == 2, result.stderr
    assert ("forward_pass 'plugin_net' is defined twice: in the ext-a plugin ext_a = ext_a.module_map and in the "
            "ext-b plugin ext_b = ext_b.module_map") in result.stderr


def test_a_plugin_never_hides_a_built_in_name(tmp_path):
    site = tmp_path / "site"
    install(site, "my-playground-ext", "my_ext", {"forward_pass": {"mlp_forward": "my_ext.my_net"}})
    result = dry_run(tmp_path, site, "mlp_forward")
    assert result.returncode == 2, result.stderr
    assert "forward_pass 'mlp_forward' is defined twice: in " in result.stderr
    assert "module_map.py and in the my-playground-ext plugin my_ext = my_ext.module_map" in result.stderr


def test_a_plugin_that_fails_to_import_names_its_package(tmp_path):
    site = tmp_path / "site"
    install(site, "my-playground-ext", "my_ext", {})
    (site / "my_ext" / "module_map.py").write_text("import not_installed_dependency\n")
    result = dry_run(tmp_path, site, "mlp_forward")
    assert result.returncode == 2, result.stderr
    assert "the my-playground-ext plugin my_ext = my_ext.module_map" in result.stderr
    assert "not_installed_dependency" in result.stderr
