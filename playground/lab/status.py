"""status.json: what an experiment is doing, who is doing it, and how each attempt at it ended.

Statuses: `queued` (a sweep planned it), `running`, `complete`, `failed` (with the error), `interrupted`
(stopped by SIGTERM or Ctrl-C; resumable), `killed` (status.json still says running but the process that wrote
it is gone: SIGKILL, out of memory, power loss). `killed` is never written: readers infer it from the recorded
host, pid and process start time, so it is only detectable on the host that ran the attempt.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket

from playground import checkpoint

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


def read(folder: str) -> dict | None:
    try:
        with open(os.path.join(folder, FILE), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def write(folder: str, info: dict) -> None:
    first = ("tag", "status", "error", "created", "started", "ended", "host", "pid", "pid_start")
    ordered = {**{k: info[k] for k in first if k in info}, **info}
    checkpoint.atomic_write(os.path.join(folder, FILE), json.dumps(ordered, indent=1).encode())
