"""Resolve a `*_py` name to the module or class that serves it, and check it fits its role.

A name is looked up in the extra maps listed in `model.module_maps`, then in the top-level `module_map.py`;
a name that is in no map is imported as a module path (`pkg.module`, or `pkg.module.Attribute` for classes).
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
from types import ModuleType
from typing import Any

from playground.components import role_for
from playground.errors import ComponentError


def module_maps(extra: list[str]) -> dict[str, str]:
    """Name -> import path, from the extra maps (earlier wins) over the top-level module_map.py."""
    merged: dict[str, str] = {}
    for source in ["module_map", *extra][::-1]:
        try:
            module = importlib.import_module(source)
        except ImportError as e:
            raise ComponentError(f"model.module_maps: cannot import {source!r} ({e}); give an importable "
                                 "module that defines MODULE_MAP") from None
        if not isinstance(getattr(module, "MODULE_MAP", None), dict):
            raise ComponentError(f"model.module_maps: {source!r} defines no MODULE_MAP dict of name -> module path")
        merged.update(module.MODULE_MAP)
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


def resolve(key: str, name: str, maps: dict[str, str]) -> Any:
    """The object serving opts key `key` (e.g. 'model.forward_pass_py') under `name`, checked against its role."""
    path = maps.get(name, name)
    if name not in maps and importlib.util.find_spec(name.split(".")[0]) is None:
        close = difflib.get_close_matches(name, maps, n=3, cutoff=0.6)
        hint = f"Did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise ComponentError(f"{key} = {name!r} is not in module_map.py. {hint}Add it to MODULE_MAP, list a map "
                             f"in model.module_maps, or give a dotted module path. Known: {', '.join(sorted(maps))}")
    try:
        obj = import_path(path)
    except ImportError as e:
        raise ComponentError(f"{key} = {name!r}: cannot import {path!r} ({e})") from None
    check_role(key, name, obj)
    return obj


def check_role(key: str, name: str, obj: Any) -> None:
    """Fail, naming what is missing, when `obj` lacks what the role of `key` needs."""
    role = role_for(key)
    if role.is_class and not inspect.isclass(obj):
        raise ComponentError(f"{key} = {name!r} is not a class; a {role.title} is {role.contract}")
    if not role.is_class and not isinstance(obj, ModuleType):
        raise ComponentError(f"{key} = {name!r} is not a module; a {role.title} module defines {role.contract}")
    if role.base is not None and not issubclass(obj, role.base):
        raise ComponentError(f"{key} = {name!r} ({obj.__name__}) is not a subclass of "
                             f"{role.base.__module__}.{role.base.__name__}, which every {role.title} must be")
    missing = [attr for attr in role.needs if not callable(getattr(obj, attr, None))]
    if missing:
        raise ComponentError(f"{key} = {name!r} ({getattr(obj, '__name__', obj)}) lacks {', '.join(missing)}; a "
                             f"{role.title} defines {role.contract}")
