"""status.json: what an experiment is doing, who is doing it, and how each attempt at it ended.

Statuses: `queued` (a sweep planned it), `running`, `complete`, `failed` (with the error), `interrupted`
(stopped by SIGTERM or Ctrl-C; resumable), `killed` (status.json still says running but the process that wrote
it is gone: SIGKILL, out of memory, power loss). `killed` is never written: readers infer it from the recorded
host, pid and process start time, so it is only detectable on the host that ran the attempt.

`read_json` is how the lab reads every JSON file an experiment holds, so a damaged one is reported by name.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
from typing import Any

from playground import checkpoint
from playground.errors import DataError

FILE = "status.json"
FINISHED = "complete"


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


def read(folder: str) -> dict | None:
    """status.json of `folder`; None when there is none."""
    try:
        return read_json(os.path.join(folder, FILE))
    except FileNotFoundError:
        return None


def write(folder: str, info: dict) -> None:
    first = ("tag", "status", "error", "created", "started", "ended", "host", "pid", "pid_start")
    ordered = {**{k: info[k] for k in first if k in info}, **info}
    checkpoint.atomic_write(os.path.join(folder, FILE), json.dumps(ordered, indent=1).encode())
