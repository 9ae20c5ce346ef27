"""Runs a search: Optuna's ask and tell around trials that are ordinary experiments, each in a process of its own.

    Driver(spec, root, jobs=2).run()

A trial: ask (the sampler seeded from the search's seed and the number of trials so far) -> its tag recorded on the
trial, then a queued experiment with the sampled opts -> `playground run --resume` through the lab's Launcher ->
tell: the objectives read from the experiment (COMPLETE), PRUNED, or FAIL with its error. Trials run in processes
because Optuna's optimize(n_jobs) runs threads.

A trial belongs to the search process that asked for it (user attrs `host` and `driver`). Optuna's heartbeats
cover neither JournalStorage nor ask and tell, so a re-run finds dead trials through the lab book instead: RUNNING
trials of this host whose search process is gone. Each is resumed from its experiment's last checkpoint under the
same trial number, or waited for when its run still goes on. The budget counts finished trials (COMPLETE, PRUNED)
plus those running anywhere, and is checked again after each ask, so workers sharing a study never run more.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from playground import checkpoint
from playground.errors import OptsError, SearchFailed, Stopped, UsageError
from playground.lab import status
from playground.lab.launcher import Launcher, describe_point, point_opts
from playground.lab.run import create
from playground.lab.tags import local_root, new_tag
from playground.search import objectives as objectives_lib, space as space_lib
from playground.search.spec import SearchSpec
from playground.search.study import build_pruner, build_sampler, open_storage, search_folder, storage_of

log = logging.getLogger(__name__)
ADOPT_AFTER_S = 60  # a RUNNING trial that nobody claimed for this long was asked for by a process that died
REPORTER = "playground.search.reporter.StudyReporter"


def gpu_problems(spec: SearchSpec, jobs: int, gpus_per_trial: int) -> None:
    """Trials on GPUs each get their own (CUDA_VISIBLE_DEVICES renumbers them from 0): a UsageError otherwise."""
    dist = spec.resolved_base.get("distributed") or {}
    gpus, first = dist.get("num_gpus") or 0, dist.get("first_gpu_id") or 0
    if gpus_per_trial and gpus and first + gpus > gpus_per_trial:
        raise UsageError(f"distributed.num_gpus: each trial sees {gpus_per_trial} GPU(s) (--gpus-per-trial), "
                         f"numbered from 0, and the opts ask for {gpus} from first_gpu_id {first}; make "
                         "first_gpu_id + num_gpus at most --gpus-per-trial")
    if not gpus_per_trial and gpus and jobs > 1:
        raise UsageError(f"distributed.num_gpus: trials train on {gpus} GPU(s) each, and --jobs {jobs} would run "
                         "them on the same GPUs; give --gpus-per-trial")


class Driver:
    """One search process: claims trials of the study and runs them, at most `jobs` at once."""

    def __init__(self, spec: SearchSpec, root: str, jobs: int = 1, gpus_per_trial: int = 0, root_given: bool = False,
                 kind: str = "search"):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.spec, self.root, self.root_given, self.kind = spec, root, root_given, kind
        self.folder = search_folder(spec.id, root)
        self.storage = storage_of(self.folder, spec.storage)
        self.launcher = Launcher(jobs, root, gpus_per_trial)
        gpu_problems(spec, jobs, gpus_per_trial)
        self.me = status.this_process()
        self.deadline = time.monotonic() + spec.time_s if spec.time_s else None
        self.running: dict[int, tuple[str, dict]] = {}  # trial number -> (tag, sampled)
        self.failures: list[str] = []
        self.ended_by = ""
        self.study: Any = None

    # ---------------------------------------------------------------------------------------------- the study

    def record(self) -> None:
        """The search folder: search.json (the document as run) and, for another storage than the journal,
        storage.txt naming it."""
        os.makedirs(self.folder, exist_ok=True)
        checkpoint.atomic_write(os.path.join(self.folder, "search.json"),
                                json.dumps(self.spec.document(), indent=1).encode())
        if self.spec.storage:
            checkpoint.atomic_write(os.path.join(self.folder, "storage.txt"), f"{self.storage}\n".encode())

    def open_study(self) -> Any:
        """Create the study, or load it when it exists (another worker, an earlier run); a new one gets its
        grid's trials and its user attrs, `space` last: others wait for it before they claim trials."""
        import optuna

        storage, spec = open_storage(self.storage), self.spec
        kwargs = {"study_name": spec.id, "storage": storage, "sampler": build_sampler(spec.algorithm, 0),
                  "pruner": build_pruner(spec.pruner)}
        try:
            study = optuna.create_study(directions=[o.direction for o in spec.objectives], **kwargs)
            fresh = True
        except optuna.exceptions.DuplicatedStudyError:
            study, fresh = optuna.load_study(**kwargs), False
        deadline = time.monotonic() + 30
        while not fresh and "space" not in study.user_attrs and time.monotonic() < deadline:
            time.sleep(0.2)  # the worker that created it is enqueueing its grid
        if fresh or "space" not in study.user_attrs:
            for i, point in enumerate(spec.points or []):
                study.enqueue_trial(space_lib.as_params(spec.space, point), skip_if_exists=not fresh,
                                    user_attrs={"tag": spec.tags[i]} if spec.tags else None)
            study.set_user_attr("objectives", [o.as_dict() for o in spec.objectives])
            study.set_user_attr("space", spec.space)
        return study

    def requeue_failed_points(self) -> None:
        """A grid point whose trials all failed is enqueued again (under the same experiment): a re-run retries
        it, as it resumes the others. One whose experiment is complete (unscored: no finite objective) is done."""
        import optuna

        states = optuna.trial.TrialState
        trials = self.study.get_trials(deepcopy=False)
        by_point: dict[str, list] = {}
        for t in trials:
            by_point.setdefault(space_lib.canonical(t.params or t.system_attrs.get("fixed_params", {})), []).append(t)
        for point in self.spec.points or []:
            params = space_lib.as_params(self.spec.space, point)
            tried = by_point.get(space_lib.canonical(params), [])
            if tried and all(t.state == states.FAIL for t in tried):
                tag = next((t.user_attrs["tag"] for t in reversed(tried) if "tag" in t.user_attrs), None)
                if tag and status.effective(status.read(os.path.join(local_root(self.root), tag)) or {}) == "complete":
                    continue
                self.study.enqueue_trial(params, user_attrs={"tag": tag} if tag else None)

    @contextmanager
    def claiming(self) -> Iterator[None]:
        """One process of this host at a time claims trials (a lock in the search folder): two re-runs must not
        both adopt the same dead trial."""
        fd = os.open(os.path.join(self.folder, ".claims.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def set_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.study._storage.set_trial_user_attr(trial_id, key, value)

    def claim(self, trial_id: int) -> None:
        self.set_attr(trial_id, "host", self.me["host"])
        self.set_attr(trial_id, "driver", {"pid": self.me["pid"], "pid_start": self.me["pid_start"]})

    # ---------------------------------------------------------------------------------------------- the loop

    def run(self) -> None:
        """Run trials until the budget is spent (here and by the other workers), the time is up, or too many
        failed; Stopped on SIGINT/SIGTERM once the running trials have checkpointed."""
        self.record()
        self.study = self.open_study()
        if self.spec.points is not None:
            with self.claiming():
                self.requeue_failed_points()
        self.launcher.run_until_done(lambda: self.may_start() and self.start_one(), self.conclude)
        if self.launcher.signals:
            raise Stopped(f"{self.kind} {self.spec.id} stopped by {self.signal_name()}; its trials checkpointed: "
                          "re-run the same command to resume them")
        if len(self.failures) >= self.spec.max_failures:
            raise SearchFailed(f"{self.kind} {self.spec.id}: {len(self.failures)} trial(s) failed in this run "
                               f"(search.budget.max_failures is {self.spec.max_failures}): "
                               f"{'; '.join(self.failures)}. Fix the cause and re-run the same command")

    def signal_name(self) -> str:
        import signal

        return signal.Signals(self.launcher.signals[0]).name

    def may_start(self) -> bool:
        if len(self.failures) >= self.spec.max_failures:
            self.ended_by = "too many failures"
            return False
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.ended_by = f"the time budget ({self.spec.time_s:g} s) is spent"
            return False
        return True

    def start_one(self) -> bool:
        """Claim a dead trial of this host, or ask for a new one, and start it; False when there is none."""
        with self.claiming():
            trial = self.adopt() or self.ask()
        if trial is None:
            return False
        self.begin(trial)
        return True

    def adopt(self) -> Any:
        """A RUNNING trial whose search process is gone from this host (or that nobody claimed), now ours."""
        import optuna

        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            owner = t.user_attrs.get("driver")
            if t.number in self.running:
                continue
            if owner is None:
                if (dt.datetime.now() - (t.datetime_start or dt.datetime.now())).total_seconds() < ADOPT_AFTER_S:
                    continue
            elif t.user_attrs.get("host") != self.me["host"] or status.process_alive(owner["pid"],
                                                                                     owner.get("pid_start")):
                continue
            self.claim(t._trial_id)
            return t
        return None

    def ask(self) -> Any:
        """A new trial (a grid's next point), or None when the budget is spent."""
        import optuna

        states = optuna.trial.TrialState
        trials = self.study.get_trials(deepcopy=False)
        claimed = [t for t in trials if t.state in (states.COMPLETE, states.PRUNED, states.RUNNING)]
        if self.spec.grid and not any(t.state == states.WAITING for t in trials):
            self.ended_by = "every point of the grid has run"
            return None
        if len(claimed) >= self.spec.trials:
            self.ended_by = f"the budget of {self.spec.trials} trial(s) is spent or running"
            return None
        self.study.sampler = build_sampler(self.spec.algorithm, len(trials))
        trial = self.study.ask()
        self.claim(trial._trial_id)
        claimed = sorted(t.number for t in self.study.get_trials(deepcopy=False, states=(
            states.COMPLETE, states.PRUNED, states.RUNNING)))
        if trial.number not in claimed[:self.spec.trials]:  # another worker asked at the same moment
            self.set_attr(trial._trial_id, "error", f"not run: other workers claimed the budget of "
                          f"{self.spec.trials} trial(s) first")
            self.study.tell(trial, state=states.FAIL)
            self.ended_by = f"the budget of {self.spec.trials} trial(s) is spent or running"
            return None
        return trial

    # ---------------------------------------------------------------------------------------------- one trial

    def begin(self, trial: Any) -> None:
        """Sample the trial (unless it was), make its experiment (unless it exists) and start or watch its run."""
        import optuna

        trial_id, number = trial._trial_id, trial.number
        attrs = self.study._storage.get_trial(trial_id).user_attrs
        sampled, tag = attrs.get("sampled"), attrs.get("tag")
        if sampled is None:
            if not isinstance(trial, optuna.trial.Trial):  # asked by a process that died before sampling it
                self.study.sampler = build_sampler(self.spec.algorithm, number)
                trial = optuna.trial.Trial(self.study, trial_id)
            sampled = space_lib.suggest(trial, self.spec.space, self.spec.resolved_base)
            self.set_attr(trial_id, "sampled", sampled)
        if tag is None:
            tag = new_tag()
            self.set_attr(trial_id, "tag", tag)  # before the experiment exists: never lost track of
        folder = os.path.join(local_root(self.root), tag)
        label = self.label(number, tag, sampled)
        info = status.read(folder)
        if info is None:
            from playground import runner

            try:
                opts = runner.prepare(self.experiment_opts(sampled, number))[0]
            except OptsError as e:
                self.fail(number, trial_id, label, "; ".join(e.problems))
                return
            create(opts, self.root, tag=tag, search={"id": self.spec.id, "trial": number, "sampled": sampled})
            info = status.read(folder) or {}
        elif info.get("search", {}).get("trial") != number and status.effective(info) != "running":
            with status.held(folder):  # made by a sweep's plan, or for a trial that failed before
                info = status.read(folder) or info
                info["search"] = {"id": self.spec.id, "trial": number, "sampled": sampled}
                status.write(folder, info)
        self.running[number] = (tag, sampled)
        current = status.effective(info)
        if current in ("complete", "pruned"):
            self.conclude(number, 0.0)  # nothing to run: a run outside this search (a Slurm job) finished it
        elif current == "running":
            self.launcher.watch(number, folder, int(info.get("pid") or 0), label)
        else:
            self.launcher.start(number, folder, label)

    def label(self, number: int, tag: str, sampled: dict[str, Any]) -> str:
        """How the trial is named in what the search prints: a sweep numbers its points (a point re-queued after
        a failure is a later trial of the same point)."""
        tags = self.spec.tags or []
        which = f"[{tags.index(tag) + 1}/{len(tags)}]" if self.kind == "sweep" and tag in tags else f"trial {number}"
        return f"{which} {tag} {describe_point(sampled)}"

    def experiment_opts(self, sampled: dict[str, Any], number: int) -> dict:
        """The trial's opts: the base with the sampled values, plus ModelStatistics when params or FLOPs are
        objectives, and the StudyReporter when the search prunes (one recorded objective): it imports Optuna in
        the trial's process, about 0.8 CPU-s, which a search without a pruner does not spend."""
        opts = point_opts(self.spec.base, sampled, "search.space.")
        output = opts["output"]
        if self.root_given:
            output["runs_root"] = self.root
        handlers = list(output.get("handlers") or [])
        objectives = self.spec.objectives
        if any(o.metric in objectives_lib.STATISTICS for o in objectives) and not any(
                isinstance(h, dict) and h.get("handler_py") == "ModelStatistics" for h in handlers):
            handlers.append({"handler_py": "ModelStatistics", "kargs": {}})
        if self.spec.pruner["type"] != "none" and len(objectives) == 1 and not objectives[0].is_cost:
            handlers.append({"handler_py": REPORTER, "kargs": {
                "storage": self.storage, "study": self.spec.id, "trial": number, "metric": objectives[0].metric,
                "mode": objectives[0].mode, "reduce": objectives[0].reduce, "pruner": self.spec.pruner}})
        output["handlers"] = handlers
        return opts

    def conclude(self, number: int, seconds: float) -> None:
        """Tell the study how the trial's run ended; a run stopped by our signal stays RUNNING, to be resumed."""
        import optuna

        tag, sampled = self.running.pop(number)
        folder = os.path.join(local_root(self.root), tag)
        label = self.label(number, tag, sampled)
        info = status.read(folder) or {}
        current = status.effective(info)
        trial_id = self.study._storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)
        after = f" after {seconds:.1f} s" if seconds else ""
        if current not in ("complete", "pruned", "failed") and self.launcher.signals:
            print(f"{label}: {current}{after}; re-run the same command to resume it", flush=True)
        elif current == "complete":
            try:
                values = objectives_lib.values(folder, self.spec.objectives)
            except ValueError as e:  # it diverged, say: its run is done, with nothing to rank it by
                self.set_attr(trial_id, "error", f"complete, unscored: {e}")
                self.study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
                print(f"{label}: complete{after}, unscored: {e}", flush=True)
                return
            except (OSError, KeyError) as e:
                self.fail(number, trial_id, label, f"complete, but {e}")
                return
            self.study.tell(number, values, skip_if_finished=True)
            scores = " ".join(f"{o.metric}={v:.4g}" for o, v in zip(self.spec.objectives, values))
            print(f"{label}: complete{after}: {scores}", flush=True)
        elif current == "pruned":
            self.study.tell(number, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
            print(f"{label}: pruned{after}", flush=True)
        else:
            self.fail(number, trial_id, label, info.get("error") or f"{current}: its run ended without recording "
                      f"why; see {os.path.join(folder, 'console.txt')}")

    def fail(self, number: int, trial_id: int, label: str, error: str) -> None:
        import optuna

        self.running.pop(number, None)
        self.set_attr(trial_id, "error", error)
        self.study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        self.failures.append(f"trial {number}: {error}")
        print(f"{label}: failed: {error}", flush=True)
