"""Classes the opts name by type, Vega's way: {"type": "AdamW", "params": {"weight_decay": 0.05}}, for the
optimizer, the LR schedule and the loss.

A type is a class of the torch namespace of its kind, or a dotted path to one. `Kind.problems` checks a spec
before anything runs (an unknown type with the closest names, a param the class does not take or requires, a
value its annotation or default rules out, a value its constructor refuses); `Kind.build` makes the class from
the same reading, so what was checked is what runs.
"""
from __future__ import annotations

import collections.abc
import difflib
import inspect
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import torch

from playground.opts import OPTIONAL, REQUIRED, Opt
from playground.registry import import_path

AUTO = "auto"  # a param value the builder derives (the `auto` of Kind.build)
_EMPTY = inspect.Parameter.empty


def spec_opt(doc: str, example: str, default: Any = None, rule: str = OPTIONAL, check: Any = None,
             **fields: Opt) -> Opt:
    """The declaration of a {type, params} key; `fields` declares its fields beyond those two."""
    return Opt((dict,), default, rule, doc, example, check=check, fields={
        "type": Opt((str,), None, REQUIRED, "Class name or dotted path."),
        "params": Opt((dict,), {}, doc="Keyword arguments of the class."), **fields})


@dataclass(frozen=True)
class Kind:
    """What a spec may name: the classes of `namespace` deriving from `base` (less those `excluded` says why the
    opts cannot build), or a dotted path to a subclass of `path_base`. `supplied`: the parameters the builder
    passes itself, with where their value comes from."""

    what: str
    namespace: types.ModuleType
    base: type
    supplied: dict[str, str] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    path_base: type | None = None

    def known(self) -> list[str]:
        return sorted(name for name, obj in vars(self.namespace).items() if not name.startswith("_")
                      and inspect.isclass(obj) and issubclass(obj, self.base) and obj is not self.base
                      and name not in self.excluded)

    def resolve(self, name: str) -> type:
        """The class `name` names; ValueError naming the closest known names when there is none."""
        if name in self.excluded:
            raise ValueError(f"{name!r} cannot be built from opts: {self.excluded[name]}")
        if name in self.known():
            return getattr(self.namespace, name)
        base = self.path_base or self.base
        if "." in name:
            try:
                obj = import_path(name)
            except ImportError as e:
                raise ValueError(f"cannot import {name!r} ({e}); give a class of {self.namespace.__name__} or an "
                                 "importable dotted path") from None
            if inspect.isclass(obj) and issubclass(obj, base):
                return obj
            raise ValueError(f"{name!r} is not a subclass of {base.__module__}.{base.__qualname__}")
        close = difflib.get_close_matches(name, self.known(), n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise ValueError(f"{name!r} is not a {self.what} of {self.namespace.__name__}; {hint}known: "
                         f"{', '.join(self.known())}; or a dotted path to a class")

    def problems(self, spec: dict, *args: Any, auto: dict[str, Any] | None = None, probe: bool = True,
                 **supplied: Any) -> list[str]:
        """Problems of `spec`, each starting with its field (".params.eps: ..."). With `probe`, it is also built
        once with the constructor's other arguments (`args`, `supplied`), so a value the class refuses (an eps
        below 0) is found now."""
        try:
            cls = self.resolve(spec["type"])
        except ValueError as e:
            return [f".type: {e}"]
        auto, signature = auto or {}, _signature(cls)
        takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        accepted = {name: p for name, p in signature.parameters.items() if p.kind not in (p.VAR_POSITIONAL,
                                                                                          p.VAR_KEYWORD)}
        problems = []
        for name, value in (spec.get("params") or {}).items():
            where = f".params.{name}"
            if name in self.supplied:
                problems.append(f"{where}: set by the framework ({self.supplied[name]}); leave it out")
            elif name not in accepted and not takes_any:
                close = difflib.get_close_matches(name, accepted, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                problems.append(f"{where}: {cls.__name__} takes no such parameter; {hint}it takes "
                                f"{', '.join(n for n in accepted if n not in self.supplied)}")
            elif value == AUTO and name in auto:
                continue
            elif name in accepted and _accepts(accepted[name], value) is False:
                annotation = accepted[name].annotation
                wanted = (inspect.formatannotation(annotation) if annotation is not _EMPTY
                          else f"a value like its default {accepted[name].default!r}")
                problems.append(f"{where}: {cls.__name__} takes {wanted}, got {json.dumps(value)}")
        given = spec.get("params") or {}
        problems += [f".params.{name}: missing; {cls.__name__} requires it" for name, p in accepted.items()
                     if p.default is _EMPTY and name not in given and name not in self.supplied and name not in auto]
        if problems or not probe:
            return problems
        try:
            self.build(spec, *args, auto=auto, **supplied)
        except (ValueError, TypeError, RuntimeError) as e:
            return [f".params: {cls.__name__} refuses them: {' '.join(str(e).split())}"]
        return []

    def build(self, spec: dict, *args: Any, auto: dict[str, Any] | None = None, **supplied: Any) -> Any:
        """An instance of the class `spec` names, with its params (those written "auto", and required ones left
        out, taken from `auto`), JSON lists for tensor parameters as tensors, and the framework's `supplied`."""
        cls, auto = self.resolve(spec["type"]), auto or {}
        accepted = _signature(cls).parameters
        params = {name: auto[name] if value == AUTO and name in auto else value
                  for name, value in (spec.get("params") or {}).items()}
        params.update({name: auto[name] for name, p in accepted.items()
                       if name in auto and name not in params and p.default is _EMPTY})
        for name, value in params.items():
            if isinstance(value, list) and name in accepted and _takes_tensor(accepted[name].annotation):
                params[name] = torch.tensor(value)
        return cls(*args, **params, **supplied)


def _signature(cls: type) -> inspect.Signature:
    try:
        return inspect.signature(cls, eval_str=True)
    except (NameError, TypeError, SyntaxError):  # an annotation that does not evaluate: read them as text
        return inspect.signature(cls)


def _members(annotation: Any) -> list[Any]:
    """The types of a union, else the annotation itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def _takes_tensor(annotation: Any) -> bool:
    """A tensor parameter that takes no list itself (CrossEntropyLoss's weight): a JSON list becomes a tensor."""
    members = [typing.get_origin(m) or m for m in _members(annotation)]
    return torch.Tensor in members and not any(m in (list, tuple, collections.abc.Sequence) for m in members)


def _accepts(parameter: inspect.Parameter, value: Any) -> bool | None:
    """Whether the parameter takes the JSON `value`, by its annotation, else by its default; None: cannot tell."""
    if parameter.annotation is not _EMPTY and not isinstance(parameter.annotation, str):
        verdicts = [_member_accepts(m, value) for m in _members(parameter.annotation)]
        return True if True in verdicts else None if None in verdicts else False
    default = parameter.default
    if default is _EMPTY or default is None:
        return None
    for kind, json_types in ((bool, (bool,)), ((int, float), (int, float)), (str, (str,)), ((list, tuple), (list,))):
        if isinstance(default, kind):
            return isinstance(value, json_types) and (bool in json_types or not isinstance(value, bool))
    return None


def _member_accepts(annotation: Any, value: Any) -> bool | None:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    target = origin or annotation
    if target is type(None):
        return value is None
    if isinstance(value, bool):
        return target is bool if target in (bool, int, float, str, list, tuple, torch.Tensor) else None
    checks = {int: lambda: isinstance(value, int), float: lambda: isinstance(value, (int, float)),
              bool: lambda: False, str: lambda: isinstance(value, str), list: lambda: isinstance(value, list),
              tuple: lambda: isinstance(value, list), collections.abc.Sequence: lambda: isinstance(value, list),
              torch.Tensor: lambda: isinstance(value, list)}
    return checks[target]() if target in checks else None
