"""The lab book (transitional)."""
from __future__ import annotations

import json
import logging
import os

from playground import checkpoint
from playground.lab.tags import new_tag, runs_root

log = logging.getLogger(__name__)


def open_run_folder(opts: dict) -> str:
    folder = opts["output"]["checkpoint_folder"] or os.path.join(runs_root(opts), new_tag())
    os.makedirs(folder, exist_ok=True)
    opts_path = os.path.join(folder, "opts.json")
    if not os.path.exists(opts_path):
        checkpoint.atomic_write(opts_path, json.dumps(opts, indent=2).encode())
    return folder
