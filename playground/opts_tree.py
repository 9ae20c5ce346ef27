"""The opts tree as data: JSON and YAML read safely, "base" files merged, `--set` overrides, dotted keys. Nothing
here knows which keys are declared (that is playground.opts, which re-exports these functions for its callers)."""
from __future__ import annotations

import functools
import json
import os
import re
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


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML as strictly as `parse_json`: YAML 1.2 core-schema types (`no`, `off`, `0755`, `1:30` stay what
    they look like), keys given twice and .nan/.inf kept visible to `validate`, only JSON's kinds of values."""
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise UsageError(f"{source}: invalid YAML{where}: {'; '.join(filter(None, (e.context, e.problem)))}") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{source}: invalid YAML: {e}") from None
    except RecursionError:
        raise UsageError(f"{source}: nested too deeply to read; opts nest at most {MAX_DEPTH} levels") from None


@functools.cache
def _yaml_loader() -> type:
    """A SafeLoader that knows YAML 1.2's core schema only (PyYAML implements 1.1's implicit types)."""
    import yaml
    from yaml.constructor import ConstructorError, SafeConstructor

    class CoreSchemaLoader(yaml.SafeLoader):
        yaml_implicit_resolvers: dict = {}
        yaml_constructors: dict = {}

    def number(convert: Any, kind: str) -> Any:
        def construct(loader: Any, node: Any) -> Any:
            value = loader.construct_scalar(node)
            try:
                return convert(value)
            except ValueError:
                shown = value if len(value) <= 40 else value[:37] + "..."
                raise ConstructorError(None, None, f"{shown!r} is not {kind} (or has too many digits)",
                                       node.start_mark) from None
        return construct

    def integer(text: str) -> int:
        return int(text[2:], {"0o": 8, "0x": 16}[text[:2]]) if text[:2] in ("0o", "0x") else int(text, 10)

    def real(text: str) -> float:
        lowered = text.lower()
        return NotFinite(lowered.replace(".", "")) if lowered.lstrip("+-") in (".inf", ".nan") else float(text)

    def mapping(loader: Any, node: Any) -> Any:
        obj = JsonObject()
        obj.duplicates = []
        yield obj
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise ConstructorError(None, None, f"key {key!r} is not a string; quote it", key_node.start_mark)
            if key in obj:
                obj.duplicates.append(key)
            obj[key] = loader.construct_object(value_node, deep=True)

    types = {  # tag: (regex, first characters, constructor); int before float, which also matches "1"
        "null": (r"~|null|Null|NULL|", ("~", "n", "N", ""), lambda loader, node: None),
        "bool": (r"true|True|TRUE|false|False|FALSE", "tTfF",
                 lambda loader, node: loader.construct_scalar(node).lower() == "true"),
        "int": (r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789", number(integer, "an integer")),
        "float": (r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
                  r"|\.(?:nan|NaN|NAN)", "-+0123456789.", number(real, "a number")),
    }
    for name, (pattern, first, construct) in types.items():
        tag = f"tag:yaml.org,2002:{name}"
        CoreSchemaLoader.add_implicit_resolver(tag, re.compile(f"^(?:{pattern})$"), list(first))
        CoreSchemaLoader.add_constructor(tag, construct)
    CoreSchemaLoader.add_constructor("tag:yaml.org,2002:str", SafeConstructor.construct_yaml_str)
    CoreSchemaLoader.add_constructor("tag:yaml.org,2002:seq", SafeConstructor.construct_yaml_seq)
    CoreSchemaLoader.add_constructor("tag:yaml.org,2002:map", mapping)
    CoreSchemaLoader.add_constructor(None, SafeConstructor.construct_undefined)  # !!timestamp, !!set, ...: refused
    return CoreSchemaLoader


def load_opts(arg: str, beside: dict | None = None) -> dict:
    """The opts tree from `--parameters-json`/`--opts`: inline JSON or a .json/.yaml/.yml file, `{"opts": {...}}`
    or bare, with the files its top-level "base" names merged under it. With `beside`, the top-level sections next
    to "opts" (a search's "search") are moved there."""
    if arg.lstrip().startswith("{"):
        return _with_bases(parse_json(arg, "--parameters-json"), "--parameters-json", "", (), beside)
    if not os.path.isfile(arg):
        raise UsageError(f"--parameters-json {arg!r} is neither inline JSON nor an existing .json file, .yaml or "
                         ".yml file")
    return _load_file(arg, (), beside)


def _load_file(path: str, chain: tuple[tuple[str, str], ...], beside: dict | None = None) -> dict:
    """The tree in one opts file; `chain` holds the (real path, shown path) of the files that named it as a base."""
    real = os.path.realpath(path)
    if real in [seen for seen, _ in chain]:
        cycle = [shown for seen, shown in chain[[seen for seen, _ in chain].index(real):]]
        raise UsageError(f"{path}: bases form a cycle ({' -> '.join([*cycle, path])}); remove one of these \"base\" "
                         "entries")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    tree = parse_yaml(text, path) if path.lower().endswith((".yaml", ".yml")) else parse_json(text, path)
    return _with_bases(tree, path, os.path.dirname(path), (*chain, (real, path)), beside)


def _with_bases(tree: Any, source: str, folder: str, chain: tuple[tuple[str, str], ...],
                beside: dict | None = None) -> dict:
    """`tree` unwrapped from `{"opts": ...}`, merged over the files its top-level "base" names (in order; paths
    relative to `folder`); the other sections next to "opts" go to `beside` when given."""
    if not isinstance(tree, dict):
        raise UsageError(f"{source}: expected an object holding the opts, got {type(tree).__name__}")
    bases = tree.pop("base", [])
    tree.pop("$schema", None)  # an editor's pointer to playground.schema.json, not an opt
    if beside is not None and isinstance(tree.get("opts"), dict):
        beside.update((key, tree.pop(key)) for key in [k for k in tree if k != "opts"])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(base, str) and base for base in bases):
        raise UsageError(f'{source}: "base" must be a file name or a list of them (paths relative to {source})')
    if set(tree) == {"opts"}:
        tree = tree["opts"]
        if not isinstance(tree, dict):
            raise UsageError(f'{source}: "opts" must be an object')
    merged: Any = {}
    for base in bases:
        path = os.path.join(folder, base)
        if not os.path.isfile(path):
            raise UsageError(f"{source}: base {base!r} does not exist (looked for {path}); give a path relative to "
                             f"{source}")
        merged = merge(merged, _load_file(path, chain))
    return merge(merged, tree) if bases else tree


def merge(base: Any, override: Any) -> Any:
    """`override` over `base`: objects merge key by key, recursively; anything else (lists too) is replaced. Keys
    given twice in either stay marked for `validate`."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return override
    merged = JsonObject(base)
    merged.duplicates = [*getattr(base, "duplicates", ()), *getattr(override, "duplicates", ())]
    for key, value in override.items():
        merged[key] = merge(base[key], value) if key in base else value
    return merged


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
