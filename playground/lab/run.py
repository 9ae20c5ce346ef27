"""One attempt at an experiment, from the launching process: folder, tag, provenance, status, mirror.

    with open_run(opts) as folder:      # prints the tag; status running
        runner.run(opts, components, folder)
    # status complete, or failed (with the error) / interrupted, as the block ended

Where the folder is: `output.checkpoint_folder` when set (the runs root then holds a pointer to it, a symlink
named by the tag), else `<runs root>/<tag>`; when the runs root is a URL, a local working copy under the staging
folder (see tags.staging_root) that a Mirror uploads to `<url>/<tag>/`. Re-opening an unfinished experiment's
folder (same checkpoint_folder, or `playground run --resume TAG`) continues it as a new attempt under the same
tag; a complete one is immutable and is refused before anything is written. One process at a time: the run holds
an exclusive lock on its folder (status.held), so a second one is refused naming the first's pid and host.
"""
from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from playground import errors
from playground.errors import AlreadyComplete, PlaygroundError, Stopped, UploadIncomplete, UsageError
from playground.lab import provenance, status
from playground.lab.store import Mirror, Store
from playground.lab.tags import is_url, local_root, new_tag, runs_root

log = logging.getLogger(__name__)
MIRROR_INTERVAL_VAR = "PLAYGROUND_MIRROR_INTERVAL_S"


def mirror_interval_s() -> float:
    """Seconds between uploads of a run to a URL runs root: $PLAYGROUND_MIRROR_INTERVAL_S, default 10. Read
    only when a run mirrors, so a bad value fails that run with a clear error and no other command."""
    raw = os.environ.get(MIRROR_INTERVAL_VAR, "10")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"{MIRROR_INTERVAL_VAR}={raw!r}: expected a positive number of seconds, e.g. 10; "
                         "fix or unset the variable")
    return value


def mirror_deadline_s(opts: dict) -> float:
    """Seconds the last upload of a run to a URL runs root may take: output.mirror_deadline_s (opts saved before
    it existed, and the Estimator's, lack it)."""
    from playground.opts import FRAMEWORK_OPTS, get

    return get(opts, "output.mirror_deadline_s", FRAMEWORK_OPTS["output.mirror_deadline_s"].default)


def find_folder(ref: str, root: str | None = None) -> str:
    """The local folder of experiment `ref`: a run folder path, a tag, or a unique prefix of one. A remote
    experiment missing from the staging folder is downloaded there first."""
    if os.path.isfile(os.path.join(ref, status.FILE)):
        return ref
    from playground.lab.repository import ExperimentRepository

    root = root or runs_root()
    staged = os.path.join(local_root(root), ref)
    if is_url(root) and os.path.isfile(os.path.join(staged, status.FILE)):  # the working copy is here
        return staged
    tag = ExperimentRepository(root).resolve_tag(ref)
    folder = os.path.join(local_root(root), tag)
    if is_url(root) and not os.path.isfile(os.path.join(folder, status.FILE)):
        log.info("downloading %s/%s to %s", root.rstrip("/"), tag, folder)
        Store(root).download(tag, folder)
    return folder


def resume_opts(ref: str) -> dict:
    """The opts an experiment was started with, for `playground run --resume TAG`."""
    from playground.lab.repository import NotFound

    try:
        folder = find_folder(ref)
    except NotFound as e:
        raise UsageError(f"--resume {ref}: {e}; `playground runs list` shows them") from None
    return status.read_json(os.path.join(folder, "opts.json"))


def create(opts: dict, root: str, tag: str | None = None, **fields: Any) -> tuple[str, str]:
    """A new queued experiment under `root` (for sweeps and searches): (tag, folder) with opts.json and
    status.json. A search names the tag first, so that a trial never loses track of its experiment."""
    tag = tag or new_tag()
    folder = os.path.join(local_root(root), tag)
    os.makedirs(folder, exist_ok=bool(fields.get("search")))  # a search killed while creating it makes it again
    from playground import checkpoint

    checkpoint.atomic_write(os.path.join(folder, "opts.json"), json.dumps(opts, indent=2).encode())
    status.write(folder, {"tag": tag, "status": "queued", "created": status.now(), "folder": os.path.abspath(folder),
                          "store": _store_of(root), "attempts": [], **fields})
    return tag, folder


def _store_of(root: str) -> str:
    return root.rstrip("/") if is_url(root) else os.path.abspath(root)


def _folder_of(opts: dict, resume: str | None, root: str) -> str:
    """The run's local folder: the experiment resumed, output.checkpoint_folder, or a new one under the root."""
    if resume:
        return find_folder(resume, root)
    return opts["output"]["checkpoint_folder"] or os.path.join(local_root(root), new_tag())


def _make(folder: str) -> None:
    """Create the run folder: a usage error naming it where that is impossible (read-only, a file in the path)."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the run folder {folder} ({e.strerror}): choose a writable "
                         "output.checkpoint_folder, or runs root (output.runs_root, $PLAYGROUND_RUNS)") from None


def _point_root_at(root: str, tag: str, folder: str) -> None:
    """A symlink `<root>/<tag>` to a checkpoint_folder outside the root, so listings find the experiment."""
    link = os.path.join(root, tag)
    if os.path.abspath(link) == os.path.abspath(folder) or os.path.lexists(link):
        return
    try:
        os.makedirs(root, exist_ok=True)
        os.symlink(os.path.abspath(folder), link, target_is_directory=True)
    except OSError as e:
        log.warning("cannot add the pointer %s -> %s (%s); `playground runs` will not list this experiment",
                    link, folder, e.strerror)


def _refuse_unless_resumable(folder: str, info: dict) -> None:
    current = status.effective(info)
    if current == status.FINISHED:
        raise AlreadyComplete(f"{folder} holds a finished run (experiment {info['tag']}, complete): a finished "
                                 "experiment is immutable, so nothing was run. Start a new one (no "
                                 "output.checkpoint_folder, or another one)")
    if current == "running" and info.get("host") == status.hostname():
        raise UsageError(f"experiment {info['tag']} in {folder} is running (pid {info.get('pid')} on this host); "
                         "two processes must not write one experiment")
    if current == "running":  # e.g. a preempted job restarted on another node: this host cannot check
        log.warning("status.json says experiment %s is running as pid %s on %s; this host cannot tell whether "
                    "that process is gone, so this attempt continues it", info["tag"], info.get("pid"),
                    info.get("host"))


def _begin_attempt(folder: str, info: dict | None, opts: dict, root: str) -> dict:
    """Write provenance (first attempt) or record what changed (later ones), and status running."""
    if info is None:
        info = {"tag": new_tag() if opts["output"]["checkpoint_folder"] else os.path.basename(folder),
                "created": status.now(), "attempts": []}
    attempt: dict[str, Any] = {"attempt": len(info["attempts"]) + 1, "started": status.now(),
                               **status.this_process(), "argv": list(sys.argv)}
    if info["attempts"] and not info["attempts"][-1].get("ended"):  # a killed attempt never wrote its end
        info["attempts"][-1]["status"] = status.effective(info)
    if not os.path.exists(os.path.join(folder, "source.json")):  # the first attempt (maybe queued by a sweep)
        source = provenance.write(folder, opts)
    else:
        source = status.read_json(os.path.join(folder, "source.json"))
        attempt.update(_changes_since_first(folder, opts, source, attempt["attempt"]))
    attempt["git_commit"] = source.get("commit")
    info.update(status="running", folder=os.path.realpath(folder), store=info.get("store") or _store_of(root),
                started=info.get("started") or attempt["started"], ended=None, error=None,
                host=attempt["host"], pid=attempt["pid"], pid_start=attempt["pid_start"])
    info["attempts"].append(attempt)
    status.write(folder, info)
    return info


def _changes_since_first(folder: str, opts: dict, first_source: dict, number: int) -> dict:
    """Opts and source changes of a resumed attempt, recorded beside (never over) the first attempt's files."""
    from playground import checkpoint
    from playground.opts import flatten

    changes: dict[str, Any] = {}
    before, after = flatten(status.read_json(os.path.join(folder, "opts.json"))), flatten(opts)
    if changed := {k: [before.get(k), after.get(k)] for k in sorted(before.keys() | after.keys())
                   if before.get(k) != after.get(k)}:
        log.warning("resuming with opts that differ from opts.json: %s", ", ".join(changed))
        changes["opts_changed"] = changed
    source, patch = provenance.source_state()
    if (source.get("commit"), source.get("patch_sha256")) != (first_source.get("commit"),
                                                              first_source.get("patch_sha256")):
        changes["source"] = source
        if patch is not None:
            name = f"source.attempt{number}.git-patch"
            checkpoint.atomic_write(os.path.join(folder, name), patch.encode())
            changes["source"]["patch_file"] = name
        log.warning("the source differs from the first attempt's (commit %s); recorded in status.json",
                    source.get("commit"))
    return changes


def _end_attempt(folder: str, info: dict, outcome: str, error: str | None) -> None:
    info.update(status=outcome, ended=status.now(), error=error)
    info["attempts"][-1].update(ended=info["ended"], status=outcome, error=error)
    status.write(folder, info)


def outcome_of(error: BaseException | None) -> tuple[str, str | None]:
    """(status, error text) for how the attempt's block ended."""
    outcome = errors.outcome_of(error)
    if outcome == errors.COMPLETE:
        return outcome, None
    if outcome in (errors.INTERRUPTED, errors.PRUNED):
        return outcome, str(error) or type(error).__name__
    return outcome, f"{type(error).__name__}: {error}"


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Until the training loop installs its own handler, SIGTERM ends the attempt as interrupted (unless the
    launcher already handles SIGTERM itself)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Stopped("stopped by SIGTERM before training started or after it ended; re-run to resume")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def open_run(opts: dict, resume: str | None = None) -> Iterator[str]:
    """Open an attempt at an experiment (see the module docstring); yields its local folder. The process holds
    the folder's lock from before status.json is read until the final status is written."""
    root = runs_root(opts)
    folder = _folder_of(opts, resume, root)
    if is_url(root) and not os.path.isdir(folder):
        mirror_interval_s()  # a bad value fails before a folder is made
    _make(folder)
    with status.held(folder), _attempt(folder, opts, resume, root):
        yield folder


@contextmanager
def _attempt(folder: str, opts: dict, resume: str | None, root: str) -> Iterator[None]:
    """Refuse a finished experiment, else record the attempt: running now, and how the block ended."""
    info = status.read(folder)
    if resume:
        root = (info or {}).get("store") or root
    if info is not None:
        _refuse_unless_resumable(folder, info)
    interval_s = mirror_interval_s() if is_url((info or {}).get("store") or root) else None
    info = _begin_attempt(folder, info, opts, root)
    tag = info["tag"]
    if opts["output"]["checkpoint_folder"] and not resume and not is_url(root):
        _point_root_at(root, tag, folder)
    attempt = info["attempts"][-1]["attempt"]
    print(f"experiment {tag}{f' (attempt {attempt})' if attempt > 1 else ''}: {folder}", flush=True)
    mirror = None
    if interval_s:
        mirror = Mirror(folder, f"{info['store']}/{tag}", interval_s, mirror_deadline_s(opts)).start()
    error: BaseException | None = None
    try:
        with _sigterm_interrupts():
            yield
    except BaseException as e:
        error = e
        raise
    finally:
        outcome, text = outcome_of(error)
        try:
            _end_attempt(folder, info, outcome, text)
        except PlaygroundError as status_error:  # e.g. the disk that failed the run is still full
            if error is None:
                raise
            log.error("could not record the attempt's end (%s); the error that ended it follows", status_error)
        finally:
            if mirror is not None and (unpushed := mirror.close()):
                incomplete = UploadIncomplete(folder, mirror.url, unpushed, mirror.deadline_s)
                if error is None:
                    raise incomplete
                log.error("%s", incomplete)  # the attempt's own error is the one to exit with


_RUN_FILES: set[logging.Handler] = set()  # the open runs' log files: they take playground's INFO records


class _PassOn(logging.Handler):
    """Stands in for propagation while log_file has the playground logger at INFO: passes its records to the root
    logger's handlers, every one to a run's log file, to the others only from the level the caller let through."""

    def __init__(self, threshold: int):
        super().__init__()
        self.threshold = threshold

    def emit(self, record: logging.LogRecord) -> None:
        for handler in logging.getLogger().handlers:
            if record.levelno >= handler.level and (handler in _RUN_FILES or record.levelno >= self.threshold):
                handler.handle(record)


@contextmanager
def _playground_info() -> Iterator[None]:
    """The playground logger's INFO records reach the runs' log files whatever the caller's logging setup (from
    Python only the CLI sets INFO), and its other handlers see what they saw before."""
    ours = logging.getLogger("playground")
    threshold = ours.getEffectiveLevel()
    if threshold <= logging.INFO:
        yield
        return
    level, propagate, pass_on = ours.level, ours.propagate, _PassOn(threshold)
    ours.setLevel(logging.INFO)
    ours.propagate = False
    ours.addHandler(pass_on)
    try:
        yield
    finally:
        ours.removeHandler(pass_on)
        ours.setLevel(level)
        ours.propagate = propagate


@contextmanager
def log_file(path: str) -> Iterator[None]:
    """Copy every log record (playground's INFO ones whatever the logging setup), and the traceback of a failure,
    into the run's log file."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    _RUN_FILES.add(handler)
    try:
        with _playground_info():
            yield
    except Exception as e:
        if isinstance(e, PlaygroundError):
            handler.stream.write(f"error: {e}\n")
        else:
            handler.stream.write(traceback.format_exc())
        raise
    finally:
        _RUN_FILES.discard(handler)
        logging.getLogger().removeHandler(handler)
        handler.close()


@contextmanager
def run_folder(opts: dict, resume: str | None = None) -> Iterator[str]:
    """The run's folder, opened as an experiment of the lab book, with every log record copied into its
    log.txt: what `playground run` (on rank 0) and `Estimator.fit` train in."""
    with open_run(opts, resume=resume) as folder, log_file(os.path.join(folder, "log.txt")):
        yield folder
        logging.getLogger("playground").info("done: results in %s", folder)
