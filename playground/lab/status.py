"""status.json: what an experiment is doing, who is doing it, and how each attempt at it ended.

Statuses: `queued` (a sweep or search planned it), `running`, `complete`, `failed` (with the error), `interrupted`
(stopped by SIGTERM or Ctrl-C; resumable), `pruned` (a search's pruner stopped it early, after a checkpoint),
`killed` (status.json still says running but the process that wrote it is gone: SIGKILL, out of memory, power
loss). `killed` is never written: readers infer it from the recorded host, pid and process start time, so it is
only detectable on the host that ran the attempt.

`read_json` is how the lab reads every JSON file an experiment holds, so a damaged one is reported by name;
`parse` also checks status.json's shape, so readers need not guard each field. `held` keeps a second process out
of an experiment while one writes it.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from playground import checkpoint
from playground.errors import DataError, UsageError

FILE = "status.json"
FINISHED = "complete"
LOCK_FILE = ".lock"
HOLDER_WAIT_S = 1.0  # how long a refused process waits for the holder of a lock to write its name
_FIELDS = {**dict.fromkeys(("tag", "status", "error", "created", "started", "ended", "host", "pid_start", "folder",
                             "store"), str), "pid": int, "attempt": int, "attempts": list, "sweep": dict,
           "search": dict, "pipeline": dict}
_KINDS = {str: "text", int: "a whole number", list: "a list", dict: "a JSON object"}


def now() -> str:
    """UTC time with microseconds, ISO 8601: sortable as text."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def parse_time(text: str | None) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def hostname() -> str:
    return socket.gethostname()


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a live pid from a reused one."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie has exited already


def process_alive(pid: int, start: str | None) -> bool:
    """Whether process `pid` on this host is the one that started at `start` and has not exited."""
    if os.path.isdir("/proc"):
        current = process_start(pid)
        return current is not None and (start is None or current == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def effective(info: dict) -> str:
    """The status to report: `running` becomes `killed` when its process is gone from this host."""
    status = info.get("status", "unknown")
    if status == "running" and info.get("host") == hostname() and info.get("pid"):
        if not process_alive(int(info["pid"]), info.get("pid_start")):
            return "killed"
    return status


def this_process() -> dict:
    """host, pid and pid_start of the calling process, as recorded while it runs an experiment."""
    pid = os.getpid()
    return {"host": hostname(), "pid": pid, "pid_start": process_start(pid)}


def read_json(path: str, data: bytes | None = None) -> Any:
    """The JSON file at `path` (or its `data`, already fetched from a store). A damaged file (a write cut short,
    a bad edit) is a DataError naming it, not a traceback; a missing one stays FileNotFoundError."""
    try:
        if data is None:
            with open(path, "rb") as f:
                data = f.read()
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e}); restore the file or delete its experiment") from None


def shape_problem(info: Any) -> str | None:
    """What makes valid JSON `info` no status record (e.g. null, a list, a number where a time belongs), or None."""
    records = [("", info)]
    if isinstance(info, dict) and isinstance(info.get("attempts"), list):
        records += [(f"attempts[{i}]", attempt) for i, attempt in enumerate(info["attempts"])]
    for where, record in records:
        if not isinstance(record, dict):
            return f"expected a JSON object{f' in {where}' if where else ''}, got {json.dumps(record)[:40]}"
        for key, value in record.items():
            kind = _FIELDS.get(key)
            if kind and type(value) is not kind and (value is not None or key == "attempts"):
                return f'"{where + "." if where else ""}{key}" should be {_KINDS[kind]}, got {json.dumps(value)[:40]}'
    return None


def parse(path: str, data: bytes | None = None) -> dict:
    """status.json at `path` (or its `data`): a DataError naming it when damaged or of the wrong shape."""
    info = read_json(path, data)
    if problem := shape_problem(info):
        raise DataError(f"{path}: not a status record ({problem}); restore the file or delete its experiment")
    return info


def read(folder: str) -> dict | None:
    """status.json of `folder`; None when there is none."""
    try:
        return parse(os.path.join(folder, FILE))
    except FileNotFoundError:
        return None


def write(folder: str, info: dict) -> None:
    first = ("tag", "status", "error", "created", "started", "ended", "host", "pid", "pid_start")
    ordered = {**{k: info[k] for k in first if k in info}, **info}
    checkpoint.atomic_write(os.path.join(folder, FILE), json.dumps(ordered, indent=1).encode())


@contextmanager
def held(folder: str) -> Iterator[None]:
    """An exclusive lock on the experiment in `folder` for the block: flock on its .lock file, which then names
    the holder (pid, host). A second process gets a UsageError naming the holder. The kernel drops the lock of
    a process however it dies, so a .lock left by a SIGKILL never blocks; the holder removes it as it ends."""
    path = os.path.join(folder, LOCK_FILE)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UsageError(f"cannot create {path} ({e.strerror}): a run needs a writable folder; choose another "
                             "output.checkpoint_folder or runs root") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise UsageError(f"{folder} is in use by {holder}, which holds {path}: two processes must not write "
                             "one experiment. Wait for it to end or stop it, or run in another "
                             "output.checkpoint_folder") from None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(path, fd):
            break
        os.close(fd)  # the holder removed that file as it ended: lock the one that replaced it
    try:
        me = json.dumps(this_process()).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, me, 0)
        yield
    finally:
        try:
            os.unlink(path)  # before the lock is dropped: a process that opened the file meanwhile sees it replaced
        except FileNotFoundError:
            pass
        os.close(fd)


def _same_file(path: str, fd: int) -> bool:
    try:
        named, opened = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _holder(fd: int) -> str:
    """"pid N on HOST" from the lock file open as `fd`. The holder writes them just after taking the lock, so
    an empty file is read again for up to HOLDER_WAIT_S; then "another process"."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    while True:
        try:
            found = json.loads(os.pread(fd, 4096, 0))
            return f"pid {found['pid']} on {found['host']}"
        except (ValueError, TypeError, KeyError):
            if time.monotonic() > deadline:
                return "another process"
            time.sleep(0.01)
