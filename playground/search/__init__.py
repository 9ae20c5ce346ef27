"""Search over opts on Optuna: hyper-parameter and architecture search, every trial a playground experiment.

    from playground.search import run_search, load_study, search_folder
    search_id = run_search("examples/search_mlp.json", jobs=2)   # what `playground search` runs
    study = load_study(search_id)                                 # an optuna.Study: its trials, best_trials, ...

spec.py the file's "search" section, checked whole; space.py distributions and conditions as suggest calls;
objectives.py what trials are scored by; study.py Optuna's samplers, pruners and storages; driver.py ask, run,
tell; reporter.py intermediate values and pruning, inside each trial's process; command.py `playground search`.
Importing this package imports neither Optuna nor torch.
"""
from __future__ import annotations

from typing import Any


def run_search(path_or_doc: str | dict, *, jobs: int = 1, storage: str | None = None, gpus_per_trial: int = 0,
               root: str | None = None) -> str:
    """Run (or continue) the search a file, inline JSON or dict `{"opts": ..., "search": ...}` declares; returns
    its id. Raises OptsError before anything is created when the search is wrong, playground.errors.Stopped on
    SIGINT/SIGTERM once its running trials have checkpointed."""
    from playground.lab.tags import runs_root
    from playground.search.driver import Driver
    from playground.search.spec import load

    spec = load(path_or_doc, storage)
    Driver(spec, root or runs_root(spec.base), jobs, gpus_per_trial, root_given=root is not None).run()
    return spec.id


def __getattr__(name: str) -> Any:
    """`search_folder` and `load_study`, from study.py on first use (the lab reads studies from there too)."""
    if name in ("load_study", "search_folder"):
        from playground.search import study

        return getattr(study, name)
    raise AttributeError(f"module 'playground.search' has no attribute {name!r}")


__all__ = ["load_study", "run_search", "search_folder"]
