"""The lab book: every run is an experiment with a tag and a folder recording what ran and what came out."""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import string

from playground import checkpoint

log = logging.getLogger(__name__)
_ALPHABET = string.ascii_letters + string.digits


def new_tag(now: dt.datetime | None = None) -> str:
    """UTC time to the minute plus a random suffix, e.g. 202611221530-k3J9xQ2mTa: sortable and unique."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%d%H%M}-{''.join(secrets.choice(_ALPHABET) for _ in range(10))}"


def runs_root(opts: dict) -> str:
    return opts["output"]["runs_root"] or os.environ.get("PLAYGROUND_RUNS") or "runs"


def open_run_folder(opts: dict) -> str:
    """The run's folder, created with its opts.json; an existing folder is a run to resume."""
    folder = opts["output"]["checkpoint_folder"] or os.path.join(runs_root(opts), new_tag())
    os.makedirs(folder, exist_ok=True)
    opts_path = os.path.join(folder, "opts.json")
    if os.path.exists(opts_path):
        with open(opts_path, encoding="utf-8") as f:
            before = json.load(f)
        if before != opts:
            log.warning("%s was started with other opts; continuing with the new ones", folder)
    else:
        checkpoint.atomic_write(opts_path, json.dumps(opts, indent=2).encode())
    return folder
