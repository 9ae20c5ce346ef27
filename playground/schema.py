"""A JSON Schema of the opts, generated from the declarations that check them (playground.opts.Opt), so that an
editor completes and checks an opts file (VS Code and JetBrains read a top-level "$schema"). It states each key's
type, rule, choices, range, list elements and object fields; what only playground can know (components by name,
rules across keys, the machine's GPUs) is left to `--dry-run`.

    playground schema                            # the framework's keys and every catalogue component's
    playground schema --parameters-json FILE     # exactly the keys of the components FILE names
"""
from __future__ import annotations

import json
from typing import Any

from playground.opts import FRAMEWORK_OPTS, INT64_MAX, NULLABLE, OPTIONAL, REQUIRED, SECTIONS, Opt

DIALECT = "https://json-schema.org/draft/2020-12/schema"
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}


def _types(opt: Opt) -> list[str]:
    names = {JSON_TYPES[t] for t in opt.types}
    if "number" in names:
        names.discard("integer")  # a JSON Schema number includes the integers
    return sorted(names)


def value_schema(opt: Opt) -> dict[str, Any]:
    """The schema of one value of `opt` (a null is the key's own business: see key_schema)."""
    schema: dict[str, Any] = {"type": _types(opt)}
    if opt.doc:
        schema["description"] = opt.doc
    if opt.choices:
        schema["enum"] = list(opt.choices)
    if set(opt.types) & {int, float}:
        bounds = {"minimum": opt.minimum, "maximum": opt.maximum, "exclusiveMinimum": opt.exclusive_minimum,
                  "exclusiveMaximum": opt.exclusive_maximum}
        schema.update({k: v for k, v in bounds.items() if v is not None})
        # torch and numpy take integers as 64-bit ones, whatever the key's range
        schema.update({"if": {"type": "integer"}, "then": {"minimum": -INT64_MAX, "maximum": INT64_MAX}})
    if opt.rule == REQUIRED and set(opt.types) & {str, list, dict}:
        schema.update(minLength=1, minItems=1, minProperties=1)  # present and non-empty (applies per type)
    elif str in opt.types and isinstance(opt.default, str) and opt.default:
        schema["minLength"] = 1  # an empty string is no name: leave it out or null for the default
    if opt.items is not None:
        schema["items"] = value_schema(opt.items)
    if opt.fields is not None:
        schema["properties"] = {name: key_schema(field) for name, field in opt.fields.items()}
        schema["required"] = [name for name, field in opt.fields.items() if field.rule != OPTIONAL]
    return schema


def key_schema(opt: Opt) -> dict[str, Any]:
    """A declared key: null is its default when optional or nullable, an error when required."""
    schema = value_schema(opt)
    if opt.rule == NULLABLE:  # the seed's "mandatory nullable": present, but null or empty will do
        return {"anyOf": [schema, {"enum": [None, ""]}], "description": opt.doc}
    if opt.rule == OPTIONAL:  # null means the default
        schema["type"] = [*schema["type"], "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
        if opt.default is not None:
            schema["default"] = opt.default
    return schema


def catalogue_declarations() -> dict[str, list[Opt]]:
    """Every key the framework and the catalogue's components declare, with each distinct declaration of it."""
    from types import ModuleType

    from playground.registry import catalogue, import_path

    found: dict[str, list[Opt]] = {key: [opt] for key, opt in FRAMEWORK_OPTS.items()}
    for names in catalogue().values():
        for entry in names.values():
            module = import_path(entry.path)
            for key, opt in (getattr(module, "OPTS", {}) if isinstance(module, ModuleType) else {}).items():
                if opt not in found.setdefault(key, []):
                    found[key].append(opt)
    return found


def schema(declared: dict[str, Opt] | dict[str, list[Opt]] | None = None) -> dict[str, Any]:
    """The schema of an opts file (bare, or wrapped as {"opts": {...}}) with `declared` keys (default: the
    framework's and every catalogue component's, whose keys are then never required); undeclared keys are the
    user's own and allowed. A key that components declare differently accepts what any of them accepts, and is
    required by none."""
    whole_catalogue = declared is None  # then which components a file names is unknown: only the framework's
    declared = catalogue_declarations() if whole_catalogue else declared  # own keys can be required
    sections: dict[str, Any] = {}
    for key, opts in sorted(declared.items()):
        opts = opts if isinstance(opts, list) else [opts]
        section, name = key.split(".", 1)
        body = sections.setdefault(section, {"type": "object", "properties": {}, "required": []})
        body["properties"][name] = key_schema(opts[0]) if len(opts) == 1 else {"anyOf": [key_schema(o)
                                                                                         for o in opts]}
        if len(opts) == 1 and opts[0].rule in (REQUIRED, NULLABLE) and (key in FRAMEWORK_OPTS or not whole_catalogue):
            body["required"].append(name)
    opts = {"type": "object", "properties": {"$schema": {"type": "string"}, "base": {}, **sections},
            "required": [s for s in SECTIONS if sections.get(s, {}).get("required")]}
    return {"$schema": DIALECT, "title": "playground opts",
            "anyOf": [opts, {"type": "object", "properties": {"opts": opts}, "required": ["opts"]}]}


def schema_text(declared: dict[str, Opt] | None = None) -> str:
    """The schema as the file editors read (examples/playground.schema.json is the catalogue's, kept current)."""
    return json.dumps(schema(declared), indent=1, ensure_ascii=False) + "\n"
