"""Checkpoints: plain-data dicts, written atomically with a SHA-256 beside them, loaded with weights_only=True.

A checkpoint `X.pt` has its digest in `X.pt.sha256` in `sha256sum` format (`sha256sum -c X.pt.sha256` checks
it by hand). A file without a matching digest is never trusted: resume falls back to the one before.
"""
from __future__ import annotations

import glob
import hashlib
import io
import logging
import os
import pickle
import random

import numpy as np
import torch

from playground.errors import CheckpointError

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


def atomic_write(path: str, data: bytes) -> None:
    """Write, fsync, then rename: a crash mid-save never leaves a truncated file where a good one was."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise CheckpointError(f"{path}: cannot write ({e.strerror}); free space or fix permissions, then re-run "
                              "to resume from the last good checkpoint") from None


def save(path: str, checkpoint: dict) -> None:
    """Serialize `checkpoint`, publish it atomically, then its digest."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    data = buffer.getvalue()
    atomic_write(path, data)
    digest = hashlib.sha256(data).hexdigest()
    atomic_write(path + ".sha256", f"{digest}  {os.path.basename(path)}\n".encode())


def recorded_digest(path: str) -> str | None:
    """The SHA-256 recorded in `path`.sha256, or None when there is none."""
    try:
        with open(path + ".sha256", encoding="utf-8") as f:
            return f.read().split()[0]
    except (OSError, IndexError):
        return None


def digest_matches(path: str) -> bool:
    """The file's SHA-256 equals its .sha256 record: the bytes read back are what was saved."""
    expected, sha = recorded_digest(path), hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
    except OSError:
        return False
    return expected is not None and sha.hexdigest() == expected


def load(path: str, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint after checking its digest; refuse anything but tensors and plain data."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    expected = recorded_digest(path)
    if expected is None:
        raise CheckpointError(f"{path}: no digest in {os.path.basename(path)}.sha256, so it cannot be trusted "
                              "(the save was interrupted)")
    if hashlib.sha256(data).hexdigest() != expected:
        raise CheckpointError(f"{path}: SHA-256 does not match {os.path.basename(path)}.sha256; the file is "
                              "truncated or corrupt")
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported object"
        raise CheckpointError(f"{path}: refused: it holds pickled objects other than tensors and plain data "
                              f"({first_line}); re-save it as a dict of state_dicts") from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise CheckpointError(f"{path}: not a playground checkpoint (expected a dict with a 'model' state_dict)")
    return checkpoint


def newest_intact(folder: str) -> tuple[str, dict] | None:
    """The newest checkpoint in `folder` that verifies and loads, skipping (and reporting) damaged ones."""
    candidates = sorted(glob.glob(os.path.join(glob.escape(folder), "*.pt")), key=os.path.getmtime, reverse=True)
    for path in candidates:
        try:
            return path, load(path)
        except CheckpointError as e:
            log.error("skipping %s; trying the one before", e)
    if candidates:
        raise CheckpointError(f"{folder}: none of its {len(candidates)} checkpoints is intact; move them away "
                              "to start afresh, or restore one from a backup")
    return None


def rng_states() -> dict:
    """Every global RNG, as plain data (tensors, ints, strings)."""
    np_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"bit_generator": np_state["bit_generator"], "key": torch.from_numpy(np_state["state"]["key"]),
                  "pos": np_state["state"]["pos"], "has_gauss": np_state["has_gauss"],
                  "gauss": np_state["gauss"]},
        "python": list(random.getstate()),
    }


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"], "state": {"key": n["key"].numpy(), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
