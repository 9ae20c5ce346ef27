"""Every user-facing error lives in playground/errors.py, with its exit code and its lab-book outcome."""
from __future__ import annotations

import importlib
import pkgutil

import playground
from playground import errors


def subclasses(cls: type) -> set[type]:
    return {cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))}


def test_every_playground_error_is_defined_in_errors_py():
    for module in pkgutil.walk_packages(playground.__path__, "playground."):
        if module.name != "playground.__main__":  # that one runs the command
            importlib.import_module(module.name)
    elsewhere = sorted(f"{c.__module__}.{c.__name__}" for c in subclasses(errors.PlaygroundError)
                       if c.__module__.startswith("playground.") and c.__module__ != "playground.errors")
    assert not elsewhere, f"define these in playground/errors.py: {elsewhere}"


def test_exit_codes_and_outcomes():
    assert (errors.UsageError.exit_code, errors.Stopped.exit_code, errors.AlreadyComplete.exit_code) == (2, 143, 0)
    assert errors.outcome_of(None) == errors.outcome_of(errors.AlreadyComplete("done")) == "complete"
    assert errors.outcome_of(errors.Stopped("signal")) == errors.outcome_of(KeyboardInterrupt()) == "interrupted"
    assert errors.outcome_of(errors.CheckpointError("disk")) == errors.outcome_of(ValueError("bug")) == "failed"
