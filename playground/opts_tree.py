"""The opts tree as data: JSON read safely, `--set` overrides, dotted keys. Nothing here knows which keys are
declared (that is playground.opts, which re-exports these functions for its callers)."""
from __future__ import annotations

import json
import os
from typing import Any

from playground.errors import UsageError

MAX_DEPTH = 32  # levels of nesting: deeper opts could not be saved in a checkpoint (torch.save recursion)


class NotFinite(float):
    """A NaN or Infinity found while parsing; reported with its dotted key by `validate`."""


class JsonObject(dict):
    """A JSON object that remembers keys given twice (json keeps the last one silently)."""

    duplicates: list[str]


def _object_pairs(pairs: list[tuple[str, Any]]) -> JsonObject:
    obj = JsonObject()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


def parse_json(text: str, source: str) -> Any:
    """Parse JSON, keeping duplicate keys and NaN/Infinity visible to `validate` instead of silently accepting."""
    try:
        return json.loads(text, object_pairs_hook=_object_pairs, parse_constant=lambda c: NotFinite(c))
    except json.JSONDecodeError as e:
        raise UsageError(f"{source}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except ValueError:  # Python refuses integers of more than 4300 digits
        raise UsageError(f"{source}: a number has too many digits to read; give a shorter one") from None
    except RecursionError:
        raise UsageError(f"{source}: nested too deeply to read; opts nest at most {MAX_DEPTH} levels") from None


def load_opts(arg: str) -> dict:
    """The opts tree from `--parameters-json`: inline JSON or a path to a .json file, `{"opts": {...}}` or bare."""
    text, source = arg, "--parameters-json"
    if not arg.lstrip().startswith("{"):
        if not os.path.isfile(arg):
            raise UsageError(f"--parameters-json {arg!r} is neither inline JSON nor an existing .json file")
        with open(arg, encoding="utf-8") as f:
            text, source = f.read(), arg
    tree = parse_json(text, source)
    if not isinstance(tree, dict):
        raise UsageError(f"{source}: expected a JSON object holding the opts, got {type(tree).__name__}")
    if set(tree) == {"opts"}:
        tree = tree["opts"]
        if not isinstance(tree, dict):
            raise UsageError(f'{source}: "opts" must be a JSON object')
    return tree


def apply_set(opts: dict, assignment: str) -> None:
    """Apply one `--set dotted.key=VALUE`: VALUE is parsed as JSON, else taken as a string."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set {assignment!r}: expected dotted.key=VALUE, e.g. --set epoch_iter.num_epochs=3")
    set_dotted(opts, key.strip(), parse_value(raw, f"--set {key}"), f"--set {key}")


def parse_value(raw: str, source: str) -> Any:
    """A value given on the command line: JSON when it parses (numbers, true, lists...), else the text itself.
    NaN, Infinity and keys given twice are kept marked, for validation to report."""
    try:
        return parse_json(raw, source)
    except UsageError:
        return raw


def set_dotted(opts: dict, key: str, value: Any, where: str) -> None:
    """opts[dotted key] = value, creating the objects on the way; `where` names the setting in errors."""
    *parents, leaf = key.split(".")
    if not all([*parents, leaf]):
        raise UsageError(f"{where}: {key!r} has an empty part between dots; write each key of the path, e.g. "
                         "model_param.seed")
    node = opts
    for i, part in enumerate(parents):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UsageError(f"{where}: {'.'.join(parents[:i + 1])} is not an object, so it has no keys")
    node[leaf] = value


def get(opts: dict, dotted: str, default: Any = None) -> Any:
    """The value at a dotted key, or `default` when any part is missing."""
    node: Any = opts
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys to leaf values, to compare two opts trees key by key (runs diff, a resumed attempt, the hosts
    of one run): {"a": {"b": [{"c": 1}], "d": [1, 2]}} -> {"a.b[0].c": 1, "a.d": [1, 2]}. Lists of plain values
    and empty containers are leaves."""
    if isinstance(tree, dict) and tree:
        return {k: v for key, value in tree.items() for k, v in flatten(value, f"{prefix}{key}.").items()}
    if isinstance(tree, list) and any(isinstance(item, (dict, list)) for item in tree):
        return {k: v for i, value in enumerate(tree) for k, v in flatten(value, f"{prefix.rstrip('.')}[{i}].").items()}
    return {prefix.rstrip("."): tree}
