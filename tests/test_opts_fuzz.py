"""A seeded fuzz of the MLP examples' opts: whatever a mutation does, `playground run --dry-run` exits 0, or exits 2
with every line naming the key at fault; never a Python error (exit 1) or a silent refusal."""
from __future__ import annotations

import copy
import json
import random
import re
from typing import Any

import pytest

from conftest import ROOT
from playground import cli
from playground.opts import SECTIONS

BASES = [json.loads((ROOT / "examples" / name).read_text())["opts"]
         for name in ("mlp_synthetic.json", "mlp_epochs_by_loss.json")]
MUTATIONS = 400
VALUES = (None, 0, 1, -1, 7, 2**63, -(2**63) - 1, 10**30, 0.5, -2.5, 1e308, float("inf"), float("nan"), "", "x",
          "cosin", "epochs", "train_loss", [], [1], ["x"], [None], [[]], {}, {"x": 1}, {"name": None}, True, False)
# A key path at the start of an error line: a section or top-level key, then .key or [index] parts.
KEY_PATH = re.compile(r"playground: error: (?P<top>[^.\[:= ]+)(\.[^.\[:= ]+|\[\d+\])*(: | = )\S")


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into `node`, by dict key or list index."""
    found = [prefix] if prefix else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found += paths(value, prefix + (key,))
    return found


def nested(rng: random.Random) -> Any:
    """A value nested a little, or far, past the allowed depth."""
    value: Any = rng.choice(VALUES[:8])
    for _ in range(rng.choice((2, 30, 40, 200))):
        value = [value] if rng.random() < 0.5 else {"x": value}
    return value


def mutate(tree: dict, rng: random.Random) -> str:
    """Change one place of `tree` in place: replace a value, nest one deeply, delete a key or add one."""
    path = rng.choice(paths(tree))
    parent = tree
    for part in path[:-1]:
        parent = parent[part]
    kind = rng.random()
    if kind < 0.15:
        del parent[path[-1]]
        return f"delete {path}"
    if kind < 0.25 and isinstance(parent[path[-1]], dict):
        parent[path[-1]][rng.choice(("x", "nam", "ys", "kargs"))] = copy.deepcopy(rng.choice(VALUES))
        return f"add a key under {path}"
    value = nested(rng) if kind < 0.35 else copy.deepcopy(rng.choice(VALUES))
    parent[path[-1]] = value
    return f"{path} = {json.dumps(value)[:80]}"


def dry_run(tree: dict, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = cli.main(["run", "--parameters-json", json.dumps({"opts": tree}), "--dry-run"])
    return code, capsys.readouterr().err


def test_no_mutation_of_the_examples_gets_past_dry_run_without_exit_0_or_2_naming_the_key(capsys):
    rng = random.Random(20240611)
    for i in range(MUTATIONS):
        tree = copy.deepcopy(rng.choice(BASES))
        what = [mutate(tree, rng) for _ in range(rng.choice((1, 1, 2, 3)))]
        code, err = dry_run(tree, capsys)
        assert code in (0, 2), f"mutation {i} ({what}) exited {code}: {err}"
        if code == 2:
            lines = [line for line in err.splitlines() if line.startswith("playground: error:")]
            assert lines, f"mutation {i} ({what}) exited 2 without saying why: {err!r}"
            for line in lines:
                named = KEY_PATH.match(line)
                assert named and named["top"] in {*SECTIONS, *tree}, f"mutation {i} ({what}): {line}"
