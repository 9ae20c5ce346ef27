"""Experiment tags and the runs root: where experiments live."""
from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
TAG_RE = re.compile(r"^\d{12}-[A-Za-z0-9]{10}$")


def new_tag(now: dt.datetime | None = None) -> str:
    """UTC time to the minute plus a random suffix, e.g. 202611221530-k3J9xQ2mTa: sortable and unique
    (62**10, about 8e17, suffixes per minute)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%d%H%M}-{''.join(secrets.choice(_ALPHABET) for _ in range(10))}"


def is_tag(name: str) -> bool:
    return bool(TAG_RE.match(name))


def is_url(path: str) -> bool:
    """True for object-store URLs such as s3://bucket/prefix (anything with a scheme but file://)."""
    return "://" in path and not path.startswith("file://")


def runs_root(opts: dict | None = None) -> str:
    """`output.runs_root`, else $PLAYGROUND_RUNS, else ./runs: a folder or a URL such as s3://bucket/prefix."""
    root = ((opts or {}).get("output") or {}).get("runs_root") or os.environ.get("PLAYGROUND_RUNS") or "runs"
    return root.removeprefix("file://")


def staging_root() -> str:
    """Local folder holding the working copy of runs whose runs root is a URL: $PLAYGROUND_STAGING, else
    ~/.cache/playground/runs (under $XDG_CACHE_HOME when set)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.environ.get("PLAYGROUND_STAGING") or os.path.join(cache, "playground", "runs")


def local_root(root: str) -> str:
    """Where experiment folders of `root` are on this machine: the root itself, or the staging folder."""
    return staging_root() if is_url(root) else root
