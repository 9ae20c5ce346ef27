"""Checkpoints: plain-data dicts, written atomically with a SHA-256 beside them, loaded with weights_only=True.

A checkpoint `X.pt` has its digest in `X.pt.sha256` in `sha256sum` format (`sha256sum -c X.pt.sha256` checks
it by hand). A file without a matching digest is never trusted: resume falls back to the one before, and a
file without any digest (its save was cut short) is no checkpoint at all.

A checkpoint holds the experiment's state plus model, optimizer, scheduler, scaler, RNG and handlers, and the
SHA-256 of the run's opts.json (the opts are stored once per run, not in every checkpoint).
"""
from __future__ import annotations

import glob
import hashlib
import io
import json
import logging
import os
import pickle
import random

import numpy as np
import torch

from playground.errors import CheckpointError

log = logging.getLogger(__name__)
FORMAT_VERSION = 2  # 2: history and checkpoint list inside "state"; opts as a digest
FINAL = "model_final.pt"


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
    except BaseException as e:  # a full disk, or a Ctrl-C mid-write: no temporary file is left behind
        if os.path.exists(tmp):
            os.unlink(tmp)
        if not isinstance(e, OSError):
            raise
        raise CheckpointError(f"{path}: cannot write ({e.strerror}); free space or fix permissions, then re-run "
                              "to resume from the last good checkpoint") from None


def json_bytes(value: object) -> bytes:
    """`value` as the indented JSON playground writes (results.json, opts.json)."""
    return json.dumps(value, indent=1).encode()


def opts_digest(opts: dict) -> str:
    """SHA-256 of the opts as opts.json holds them (sorted keys), recorded in every checkpoint."""
    return hashlib.sha256(json.dumps(opts, sort_keys=True).encode()).hexdigest()


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
    return _upgrade(checkpoint, path)


def _upgrade(checkpoint: dict, path: str) -> dict:
    """A checkpoint of an older format in today's layout; one of a newer format is refused."""
    version = checkpoint.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written in checkpoint format {version!r}, newer than this playground reads "
                              f"({FORMAT_VERSION}); upgrade torch-playground to load it")
    if version == 1 and "state" in checkpoint:  # history and the checkpoint list were beside the state
        checkpoint["state"] = {**checkpoint["state"], "history": checkpoint.pop("history", {"train": [], "test": []}),
                               "checkpoints": checkpoint.pop("checkpoints", [])}
    return checkpoint


def newest_intact(folder: str) -> tuple[str, dict] | None:
    """The newest checkpoint in `folder` that verifies and loads, skipping (and reporting) damaged ones. A file
    with no digest at all is a save that was cut short: ignored, so a run whose first save was cut starts afresh.
    Leftover temporary files of killed saves are removed (the caller holds the run folder's lock)."""
    for stale in glob.glob(os.path.join(glob.escape(folder), "*.tmp*")):
        log.warning("removing %s, left by a save that was cut short", stale)
        os.unlink(stale)
    candidates = sorted(glob.glob(os.path.join(glob.escape(folder), "*.pt")), key=os.path.getmtime, reverse=True)
    damaged = 0
    for path in candidates:
        if recorded_digest(path) is None:
            log.warning("ignoring %s: it has no digest, so its save was cut short", path)
            continue
        try:
            saved = load(path)
        except CheckpointError as e:
            damaged += 1
            log.error("skipping %s; trying the one before", e)
            continue
        if "state" in saved:  # weights-only files (model_ema.pt) are no checkpoint to resume from
            return path, saved
    if damaged:
        raise CheckpointError(f"{folder}: none of its {damaged} checkpoint(s) with a digest is intact; move them "
                              "away to start afresh, or restore one from a backup")
    return None


# ---------------------------------------------------------------------------------------------- an experiment's


def capture(exp) -> dict:
    """Everything needed to continue `exp` exactly from here, as plain data."""
    return {"format_version": FORMAT_VERSION, "model": exp.network.state_dict(),
            "optimizer": exp.optimizer.state_dict(),
            "lr_scheduler": exp.lr_scheduler.state_dict() if exp.lr_scheduler else None,
            "grad_scaler": exp.scaler.state_dict(), "state": exp.state.state_dict(), "rng": rng_states(),
            "handlers": [{"name": type(h).__name__, "state": h.state_dict()} for h in exp.handlers],
            "total_batch_size": exp.total_batch_size, "opts_sha256": exp.opts_sha256,
            "complete": exp.state.complete}  # every rank must know a restored run has nothing left to train


def restore_into(exp, saved: dict, weights_only: bool = False) -> None:
    """Restore what `capture` returned; with weights_only, only the network's parameters and buffers."""
    exp.network.load_state_dict(saved["model"])
    if weights_only:
        return
    exp.optimizer.load_state_dict(saved["optimizer"])
    if exp.lr_scheduler is not None and saved["lr_scheduler"] is not None:
        exp.lr_scheduler.load_state_dict(saved["lr_scheduler"])
    exp.scaler.load_state_dict(saved["grad_scaler"])
    exp.state.load_state_dict({**saved["state"], "complete": saved.get("complete", False)})
    saved_handlers = saved["handlers"]
    if [h["name"] for h in saved_handlers] != [type(h).__name__ for h in exp.handlers]:
        log.warning("the handlers differ from the checkpoint's (%s); their saved state is not restored",
                    ", ".join(h["name"] for h in saved_handlers))
    else:
        for handler, entry in zip(exp.handlers, saved_handlers):
            handler.load_state_dict(entry["state"])
    set_rng_states(saved["rng"])  # last: nothing may draw between restoring and training


def write(exp, final: bool = False) -> str | None:
    """Save `exp`'s checkpoint under the name its checkpoint-path part gives (rank 0 only), then keep only the
    newest `keep_checkpoints` regular ones; return the path."""
    exp.state.checkpoint_requested = False
    if exp.rank != 0:
        return None
    path = os.path.join(exp.folder, exp.checkpoint_name(exp, exp.state.epoch, exp.state.iteration, final))
    if path not in exp.state.checkpoints:  # before saving, so the checkpoint lists itself and a resumed run too
        exp.state.checkpoints.append(path)
    save(path, {**capture(exp), "complete": final})
    log.info("checkpoint %s (epoch %d, iteration %d)", path, exp.state.epoch, exp.state.iteration)
    prune(exp.state.checkpoints, exp.folder, exp.info.keep_checkpoints, newest=path)
    return path


def prune(paths: list[str], folder: str, keep: int, newest: str) -> None:
    """Delete this folder's regular checkpoints beyond the newest `keep` (0: keep all), once `newest` verifies;
    `paths` (the run's list) is updated. The final checkpoint, files named by handlers (model_best.pt) and
    other runs' checkpoints (a pretrained model's history) are never touched."""
    regular = [p for p in paths if os.path.basename(p) != FINAL
               and os.path.dirname(os.path.abspath(p)) == os.path.abspath(folder)]
    old = regular[:-keep] if keep else []
    if not old or not digest_matches(newest):
        return
    for path in old:
        for file in (path, path + ".sha256"):
            if os.path.exists(file):
                os.unlink(file)
        paths.remove(path)
    log.info("deleted %d old checkpoint(s), keeping the newest %d (output.keep_checkpoints)", len(old), keep)


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
