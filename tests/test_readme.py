"""The README documents every opt: its reference tables are the declared opts, verbatim."""
from __future__ import annotations


from types import ModuleType

import module_map
from conftest import ROOT
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
