"""Layering: the framework never imports the demo (resnetdemo extends playground, not the reverse), and no two
modules import each other, not even lazily inside a function: each dependency goes one way."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import ROOT, playground

PACKAGES = ("playground", "resnetdemo")


def module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            files[name.removesuffix(".__init__")] = path
    return files


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Our modules that `path` imports anywhere (lazy imports inside functions included; `if TYPE_CHECKING:`
    blocks left out, as they never run). `from pkg import name` counts as pkg.name when that is a module."""
    tree = ast.parse(path.read_text())
    type_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                 and "TYPE_CHECKING" in ast.unparse(block.test) for stmt in block.body for node in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {f"{node.module}.{alias.name}" for alias in node.names} & known or {node.module}
    return found & known


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imported_modules(path, set(files)) - {name} for name, path in files.items()}


def test_playground_never_imports_resnetdemo():
    offenders = {name: sorted(d for d in deps if d.startswith("resnetdemo"))
                 for name, deps in import_graph().items() if name.startswith("playground")}
    assert not {name: deps for name, deps in offenders.items() if deps}


def test_no_import_circle_even_through_lazy_imports():
    graph = import_graph()

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for dep in graph[todo.pop()] - seen:
                seen.add(dep)
                todo.append(dep)
        return seen

    on_a_circle = sorted(f"{a} -> {b}" for a in graph for b in graph[a] if a in reachable(b))
    assert not on_a_circle, on_a_circle


def test_every_playground_module_imports_first_and_alone():
    """Each module (but __main__, which runs the command) imported first, in a process of its own (forked from one
    that has imported only torch, to keep this fast): no circular-import failure whichever module comes first, and
    no resnetdemo module loaded."""
    names = sorted(name for name in module_files() if name.startswith("playground") and name != "playground.__main__")
    script = textwrap.dedent("""
        import importlib, os, sys, traceback
        import torch  # third-party and slow to import; our modules are not imported yet
        failed = []
        for name in sys.argv[1:]:
            pid = os.fork()
            if pid == 0:
                try:
                    importlib.import_module(name)
                    demo = sorted(m for m in sys.modules if m.split(".")[0] == "resnetdemo")
                    print(f"{name} imported {demo}" if demo else "", end="", flush=True)
                    os._exit(1 if demo else 0)
                except BaseException:
                    print(f"{name}: {traceback.format_exc().splitlines()[-1]}", flush=True)
                    os._exit(1)
            if os.waitpid(pid, 0)[1]:
                failed.append(name)
        print("failed:", failed)
    """)
    result = subprocess.run([sys.executable, "-c", script, *names], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.stdout.strip().endswith("failed: []"), result.stdout + result.stderr
    assert "playground.lab.sweep" in names and "playground.cli" in names


def test_top_level_help_lists_the_plugin_command_without_importing_it():
    script = ("import sys, contextlib, io\nfrom playground import cli\n"
              "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
              "    try:\n        cli.build_parser().parse_args(['--help'])\n    except SystemExit:\n        pass\n"
              "print(out.getvalue())\nprint(sorted(m for m in sys.modules if m.startswith('resnetdemo')))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "make-lmdb" in result.stdout and result.stdout.strip().endswith("[]"), result.stdout


def test_make_lmdb_runs_through_its_entry_point():
    result = playground("make-lmdb", "--help")
    assert result.returncode == 0 and "usage: playground make-lmdb SRC OUT" in result.stdout, result
    result = playground("make-lmdb", "--num", "x")
    assert result.returncode == 2 and "see playground make-lmdb --help" in result.stderr, result


def test_flatten_is_a_function_of_the_opts_tree_with_one_home():
    from playground import opts
    from playground.lab import repository

    assert opts.flatten({"a": {"b": [{"c": 1}], "d": [1, 2]}, "e": {}}) == {"a.b[0].c": 1, "a.d": [1, 2], "e": {}}
    assert repository.flatten is opts.flatten
    definers = [path.name for path in module_files().values() if "def flatten(" in path.read_text()]
    assert definers == ["opts_tree.py"]
