"""StudyReporter: a trial reports its objective to its study after every test pass, and stops when the study's
pruner says so. A search with a pruner appends it to the output.handlers of each trial's opts; the trial's own
process talks to the storage, so pruning needs nothing from the search process and works for trials on any host.

A pruned run stops at the next iteration boundary after a checkpoint, as for any requested stop, and then ends
with playground.errors.Pruned: its experiment's status is `pruned`, and the search tells Optuna PRUNED.
"""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from playground.errors import Pruned, UsageError
from playground.events import EventHandler, Phase

if TYPE_CHECKING:
    from playground.anyexp import AnyExp

log = logging.getLogger(__name__)


class StudyReporter(EventHandler):
    """Reports `metric` (its latest value, or with reduce "best" the best so far) as the intermediate value of trial
    number `trial` of study `study` in `storage`, at step = training iterations done; stops the run when `pruner`
    ({"type": ..., kargs}, as search.pruner) prunes it. Reports on rank 0 only; the stop reaches every rank."""

    phase = Phase.DECIDE

    def __init__(self, storage: str, study: str, trial: int, metric: str, mode: str = "min", reduce: str = "last",
                 pruner: dict | None = None):
        if not (isinstance(storage, str) and isinstance(study, str) and isinstance(trial, int)):
            raise UsageError("StudyReporter: storage and study must be strings and trial an integer (the search "
                             "writes these kargs)")
        if mode not in ("min", "max") or reduce not in ("last", "best"):
            raise UsageError(f"StudyReporter: mode {mode!r} / reduce {reduce!r}; use min|max and last|best")
        self.storage, self.study_name, self.number, self.metric = storage, study, trial, metric
        self.mode, self.reduce, self.pruner = mode, reduce, pruner or {"type": "none"}
        self.best: float | None = None
        self.pruned = ""          # why the pruner stopped this trial (saved: a resumed run stops again)
        self.trial: Any = None    # optuna.trial.Trial, on rank 0 while the study's trial is running

    def on_train_begin(self, exp: AnyExp) -> None:
        if exp.rank != 0:
            return
        import optuna

        from playground.search.study import build_pruner, open_storage

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=self.study_name, storage=open_storage(self.storage),
                                  sampler=optuna.samplers.RandomSampler(), pruner=build_pruner(self.pruner))
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, self.number)
        state = study._storage.get_trial(trial_id).state
        if state != optuna.trial.TrialState.RUNNING:
            log.warning("StudyReporter: trial %d of search %s is %s, so this run reports nothing to it",
                        self.number, self.study_name, state.name)
            return
        self.trial = optuna.trial.Trial(study, trial_id)
        if self.pruned:  # restored from the checkpoint written when it was pruned
            exp.request_stop(self.pruned)

    def on_test_end(self, exp: AnyExp) -> None:
        value = exp.latest.get(self.metric)
        if self.trial is None or self.pruned or not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        if self.reduce == "best" and self.best is not None:
            value = min(value, self.best) if self.mode == "min" else max(value, self.best)
        self.best = value
        step = exp.state.global_step
        self.trial.report(value, step)
        if self.trial.should_prune():
            self.pruned = (f"pruned by the {self.pruner.get('type')} pruner of search {self.study_name} at iteration "
                           f"{step} ({self.metric} {value:.4g})")
            log.info("%s; stopping after a checkpoint", self.pruned)
            exp.request_stop(self.pruned)

    def on_train_end(self, exp: AnyExp) -> None:
        if self.pruned and exp.rank == 0:
            raise Pruned(f"{self.pruned}; its checkpoint is in {exp.folder}")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "pruned": self.pruned}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.pruned = state["best"], state["pruned"]
