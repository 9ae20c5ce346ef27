"""Resolve a `*_py` name to the module or class that serves its slot, and check it follows the slot's Protocol.

The catalogue is the built-in module_map.py (loaded from its file beside the playground package, so a
`module_map.py` in the working folder cannot hide it), plus the maps installed packages register in the
`playground.components` entry-point group, plus a user's own `module_map.py` found on sys.path, plus the maps
listed in `model.module_maps`. Each is keyed by slot. Maps add names; a name defined in two maps is an
error naming both. A name in no map is imported as a module path (`pkg.module`, or `pkg.module.Attribute`).
"""
from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from playground.errors import ComponentError, UsageError
from playground.slots import SLOTS, slot_of_key

BUILTIN_MAP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_map.py")


@dataclass(frozen=True)
class Entry:
    path: str     # import path
    source: str   # the map that defines the name


Catalogue = dict[str, dict[str, Entry]]  # slot -> name -> entry


def _load_file(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("playground_builtin_module_map", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _user_map_file() -> str | None:
    """A module_map.py on sys.path (the working folder's, typically) that is not the built-in one."""
    spec = importlib.util.find_spec("module_map")
    origin = getattr(spec, "origin", None)
    if origin and os.path.abspath(origin) != BUILTIN_MAP:
        return origin
    return None


def plugin_maps() -> list[tuple[str, Any]]:
    """(source, module) for each map installed packages register in the `playground.components` entry-point group:
    `[project.entry-points."playground.components"] my_ext = "my_ext.module_map"`, a module defining MODULE_MAP
    in the same shape as module_map.py."""
    maps = []
    for ep in sorted(importlib.metadata.entry_points(group="playground.components"), key=lambda ep: ep.name):
        dist = f"{ep.dist.name} " if ep.dist is not None else ""
        source = f"the {dist}plugin {ep.name} = {ep.value}"
        try:
            maps.append((source, ep.load()))
        except ImportError as e:
            raise ComponentError(f"{source} (entry point group playground.components): cannot import it ({e}); "
                                 "reinstall or uninstall that package") from None
    return maps


def catalogue(extra: list[str] = ()) -> Catalogue:
    """Every name by slot: the built-in map, installed plugins' maps, a user's module_map.py, then each module in
    `extra`."""
    sources: list[tuple[str, Any]] = [(BUILTIN_MAP, _load_file(BUILTIN_MAP)), *plugin_maps()]
    if user_file := _user_map_file():
        sources.append((user_file, importlib.import_module("module_map")))
    for name in extra:
        try:
            sources.append((name, importlib.import_module(name)))
        except ImportError as e:
            raise ComponentError(f"model.module_maps: cannot import {name!r} ({e}); give an importable module "
                                 "that defines MODULE_MAP") from None
    merged: Catalogue = {slot: {} for slot in SLOTS}
    for source, module in sources:
        table = getattr(module, "MODULE_MAP", None)
        if not isinstance(table, dict):
            raise ComponentError(f"{source}: defines no MODULE_MAP dict of slot -> {{name: import path}}")
        for slot, names in table.items():
            if slot not in SLOTS or not isinstance(names, dict):
                raise ComponentError(f"{source}: MODULE_MAP[{slot!r}] is not a slot's table; MODULE_MAP is keyed "
                                     f"by slot ({', '.join(SLOTS)}), e.g. {{\"forward_pass\": {{\"my_net\": "
                                     f"\"my_package.my_net\"}}}}")
            for name, path in names.items():
                if not isinstance(path, str) or not path:
                    raise ComponentError(f"{source}: MODULE_MAP[{slot!r}][{name!r}] must be an import path string")
                if (first := merged[slot].get(name)) is not None:
                    raise ComponentError(f"{slot} {name!r} is defined twice: in {first.source} and in {source}; "
                                         "rename one of them (a map adds names, it never replaces one)")
                merged[slot][name] = Entry(path, source)
    return merged


def import_path(path: str) -> Any:
    """Import 'pkg.module' or 'pkg.module.Attribute'."""
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as e:
        if "." not in path or e.name != path:
            raise
    module_name, attr = path.rsplit(".", 1)
    module = importlib.import_module(module_name)
    if not hasattr(module, attr):
        raise ModuleNotFoundError(f"{module_name} has no attribute {attr}", name=path)
    return getattr(module, attr)


def resolve(key: str, name: str, names: Catalogue) -> Any:
    """The object serving opts key `key` (e.g. 'model.forward_pass_py') under `name`, checked against its slot."""
    slot = slot_of_key(key)
    known = names[slot]
    path = known[name].path if name in known else name
    if name not in known and importlib.util.find_spec(name.split(".")[0]) is None:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f"Did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise ComponentError(f"{key} = {name!r} is not in module_map.py. {hint}Known {SLOTS[slot].title} names: "
                             f"{', '.join(sorted(known)) or 'none'}. Add it to MODULE_MAP[{slot!r}], list a map in "
                             "model.module_maps, or give a dotted module path")
    try:
        obj = import_path(path)
    except ImportError as e:
        raise ComponentError(f"{key} = {name!r}: cannot import {path!r} ({e})") from None
    except UsageError as e:  # a module refusing to load, e.g. for an optional dependency: its message says why
        raise ComponentError(f"{key} = {name!r}: {e}") from None
    check_slot(key, name, obj)
    return obj


def check_slot(key: str, name: str, obj: Any) -> None:
    """Fail, naming what is missing, when `obj` does not follow the Protocol of the slot of `key`."""
    slot = SLOTS[slot_of_key(key)]
    kind = "class" if slot.is_class else "module"
    if slot.is_class != inspect.isclass(obj) or (not slot.is_class and not isinstance(obj, ModuleType)):
        raise ComponentError(f"{key} = {name!r} is not a {kind}; a {slot.title} {kind}: {slot.contract}")
    if slot.base is not None and not issubclass(obj, slot.base):
        raise ComponentError(f"{key} = {name!r} ({obj.__name__}) is not a subclass of "
                             f"{slot.base.__module__}.{slot.base.__name__}, which every {slot.title} must be")
    if missing := [attr for attr in slot.needs if not hasattr(obj, attr)]:
        raise ComponentError(f"{key} = {name!r} ({getattr(obj, '__name__', obj)}) lacks {', '.join(missing)}; a "
                             f"{slot.title} {kind} defines {', '.join(slot.needs)}: {slot.contract}")
