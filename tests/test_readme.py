"""The README documents every opt: its reference tables are the declared opts, verbatim."""
from __future__ import annotations


from types import ModuleType

import module_map
from conftest import ROOT, playground
from playground import opts
from playground.registry import import_path


def documented_tables() -> dict[str, str]:
    """Heading -> table: the framework's keys, then each component module's own OPTS."""
    tables = {"framework": opts.reference_table(opts.FRAMEWORK_OPTS)}
    seen = set()
    for path in sorted({path for names in module_map.MODULE_MAP.values() for path in names.values()}):
        module = import_path(path)
        if isinstance(module, ModuleType) and getattr(module, "OPTS", None) and id(module.OPTS) not in seen:
            seen.add(id(module.OPTS))
            tables[module.__name__] = opts.reference_table(module.OPTS)
    return tables


def test_readme_holds_every_opts_table_verbatim():
    readme = (ROOT / "README.md").read_text()
    stale = [f"### {heading}\n{table}" for heading, table in documented_tables().items() if table not in readme]
    assert not stale, "update the README's opts reference with:\n\n" + "\n\n".join(stale)


def test_readme_warning_that_opts_are_code_holds(tmp_path):
    """The README says naming a module imports it, even under --dry-run; its own example shows it."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "**An opts file is code.**" in readme and '`"forward_pass_py": "this"` prints the Zen of Python' in readme
    result = playground("run", "--parameters-json", str(ROOT / "examples" / "mlp_synthetic.json"), "--dry-run",
                        "--set", "model.forward_pass_py=this", "--set", f"output.checkpoint_folder={tmp_path / 'run'}")
    assert "The Zen of Python" in result.stdout and result.returncode == 2, result
    assert "forward_pass_py = 'this' (this) lacks build_network" in result.stderr
