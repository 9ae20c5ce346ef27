"""Where experiments are kept: a local folder, or an object store URL (s3://bucket/prefix) through fsspec.

`Store` reads the layout `<root>/<tag>/<artifact>` from either. `Mirror` uploads a local run folder to
`<url>/<tag>/` from a background thread while the run trains: an upload never blocks an iteration, a failed
upload is retried at the next pass and reported, never raised, and `close()` flushes everything with status.json
last, so a reader that sees the final status sees every file. fsspec (and s3fs) are imported only here, lazily.

S3 credentials and endpoint come from the usual AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL for an S3-compatible server) or ~/.aws.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from playground.lab.status import FILE as STATUS_FILE, LOCK_FILE
from playground.lab.tags import is_tag, is_url

log = logging.getLogger(__name__)


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for `url`; a clear error when its protocol's package is missing."""
    import fsspec

    for name in ("botocore", "aiobotocore", "s3fs"):  # their INFO lines ("Found credentials...") are noise here
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as e:
        raise ImportError(f"{url}: {e}; for s3:// install s3fs (pip install s3fs)") from None


def skipped(name: str) -> bool:
    """Temporary files of atomic writes, and the lock of a running experiment: never uploaded or listed."""
    return ".tmp" in name or os.path.basename(name) == LOCK_FILE


class Store:
    """Read access to the experiments under a runs root, local or remote."""

    def __init__(self, root: str):
        self.root = root
        self.remote = is_url(root)
        if self.remote:
            self.fs, self.path = filesystem(root)
            self.path = self.path.rstrip("/")

    def tags(self) -> list[str]:
        """Tags of every experiment folder (a pointer to a checkpoint_folder counts; a dangling one does not)."""
        if self.remote:
            self.fs.invalidate_cache(self.path)
            try:
                names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.path, detail=False)]
            except FileNotFoundError:
                return []
        else:
            if not os.path.isdir(self.root):
                return []
            names = [n for n in os.listdir(self.root) if os.path.isdir(os.path.join(self.root, n))]
        return sorted(n for n in names if is_tag(n))

    def files(self, tag: str) -> list[str]:
        """Artifact names of one experiment, relative to its folder, sorted."""
        if self.remote:
            base = f"{self.path}/{tag}"
            self.fs.invalidate_cache(base)
            found = self.fs.find(base)
            names = [p[len(base) + 1:] for p in found]
        else:
            base = os.path.join(self.root, tag)
            names = [os.path.relpath(os.path.join(d, f), base) for d, _, fs in os.walk(base) for f in fs]
        return sorted(n for n in names if not skipped(n))

    def exists(self, tag: str, name: str) -> bool:
        if self.remote:
            path = f"{self.path}/{tag}/{name}"
            self.fs.invalidate_cache(path)
            return self.fs.isfile(path)
        return os.path.isfile(os.path.join(self.root, tag, name))

    def read(self, tag: str, name: str) -> bytes:
        """The bytes of one artifact; FileNotFoundError when absent."""
        if self.remote:
            path = f"{self.path}/{tag}/{name}"
            self.fs.invalidate_cache(path)
            return self.fs.cat_file(path)
        with open(os.path.join(self.root, tag, name), "rb") as f:
            return f.read()

    def download(self, tag: str, folder: str) -> None:
        """Copy a remote experiment into a local folder (to resume it on another machine)."""
        os.makedirs(folder, exist_ok=True)
        for name in self.files(tag):
            target = os.path.join(folder, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            self.fs.get_file(f"{self.path}/{tag}/{name}", target)


class Mirror:
    """Uploads a run folder to `url` in a daemon thread, every `interval_s` and at `close()`."""

    def __init__(self, folder: str, url: str, interval_s: float = 10.0):
        self.folder, self.url, self.interval_s = folder, url.rstrip("/"), interval_s
        self.fs, self.path = filesystem(self.url)
        self.uploaded: dict[str, tuple[int, int]] = {}  # name -> (size, mtime_ns) of the uploaded version
        self.failures: dict[str, int] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one pass at a time: the thread's, or close()'s
        self._thread = threading.Thread(target=self._loop, name=f"playground-mirror-{os.path.basename(folder)}",
                                        daemon=True)

    def start(self) -> Mirror:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if not self._stop.is_set():
                self.sync()

    def changed(self) -> list[tuple[str, tuple[int, int]]]:
        """Files whose size or modification time differs from the uploaded version; status.json last."""
        found = []
        for directory, _, names in os.walk(self.folder):
            for name in names:
                path = os.path.join(directory, name)
                rel = os.path.relpath(path, self.folder)
                if skipped(name):
                    continue
                try:
                    st = os.stat(path)
                except FileNotFoundError:  # replaced or removed since the listing
                    continue
                signature = (st.st_size, st.st_mtime_ns)
                if self.uploaded.get(rel) != signature:
                    found.append((rel, signature))
        return sorted(found, key=lambda item: (item[0] == STATUS_FILE, item[0]))

    def sync(self) -> list[str]:
        """One pass: upload what changed. Returns the names that failed (kept for the next pass)."""
        with self._lock:
            failed = []
            for rel, signature in self.changed():
                try:
                    self.fs.put_file(os.path.join(self.folder, rel), f"{self.path}/{rel.replace(os.sep, '/')}")
                except FileNotFoundError:
                    continue
                except Exception as e:  # noqa: BLE001 - any storage error is retried, never fatal to training
                    count = self.failures[rel] = self.failures.get(rel, 0) + 1
                    if count == 1 or count % 10 == 0:
                        log.warning("upload of %s to %s failed (attempt %d, will retry): %s: %s", rel, self.url,
                                    count, type(e).__name__, e)
                    failed.append(rel)
                    continue
                self.uploaded[rel] = signature
                self.failures.pop(rel, None)
            return failed

    def close(self, tries: int = 3, backoff_s: float = 1.0) -> list[str]:
        """Stop the thread and upload everything left, retrying; returns (and logs) what could not be uploaded."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        failed: list[str] = []
        for attempt in range(tries):
            failed = self.sync()
            if not failed:
                return []
            if attempt + 1 < tries:
                time.sleep(backoff_s * 2 ** attempt)
        log.error("%d file(s) of %s were not uploaded to %s: %s; they are still in the local folder (copy them "
                  "by hand, e.g. with `aws s3 cp --recursive`)", len(failed), self.folder, self.url,
                  ", ".join(failed))
        return failed
