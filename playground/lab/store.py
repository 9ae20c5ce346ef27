"""Where experiments are kept: a local folder, or an object store URL (s3://bucket/prefix) through fsspec.

`Store` reads the layout `<root>/<tag>/<artifact>` from either. `Mirror` uploads a local run folder to
`<url>/<tag>/` from a background thread while the run trains: an upload never blocks an iteration, a failed
upload is retried at the next pass and reported, never raised, and `close()` flushes everything with status.json
last, so a reader that sees the final status sees every file. A dead store must not hold a finished run forever:
every request has a timeout, and `close()` gives up after its deadline, naming the files still only in the local
folder (`UploadIncomplete`; `playground runs push TAG` uploads them later). fsspec (and s3fs) are imported only
here, lazily.

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
# One request waits for the store a third of the mirror's deadline, within these bounds (the first request also
# sets up the client, about 0.5 s)
REQUEST_TIMEOUT_RANGE_S = (2.0, 30.0)
MIN_UPLOAD_BYTES_PER_S = 1 << 20  # an upload slower than this counts as a store that does not answer


def filesystem(url: str, request_timeout_s: float | None = None) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for `url`; a clear error when its protocol's package is missing. With
    `request_timeout_s`, an S3 request waits at most that long to connect and for each read, and is tried once
    (botocore and s3fs would otherwise retry each file for seconds): the caller retries at its next pass."""
    import fsspec

    for name in ("botocore", "aiobotocore", "s3fs"):  # their INFO lines ("Found credentials...") are noise here
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)
    s3 = request_timeout_s is not None and fsspec.utils.get_protocol(url) in ("s3", "s3a")
    options = {"config_kwargs": {"connect_timeout": request_timeout_s, "read_timeout": request_timeout_s,
                                 "retries": {"total_max_attempts": 1}}} if s3 else {}
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
    except ImportError as e:
        raise ImportError(f"{url}: {e}; for s3:// install s3fs (pip install s3fs)") from None
    if s3:
        fs.retries = 1  # s3fs's own retry loop (an instance of these options only)
    return fs, path


def is_timeout(error: BaseException) -> bool:
    """A store that does not answer, whichever library noticed (builtin, botocore, requests and aiohttp
    timeouts share no base class but their names)."""
    return any("Timeout" in cls.__name__ for cls in type(error).__mro__)


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
    """Uploads a run folder to `url` in a daemon thread, every `interval_s`, and a last time at `close()`, which
    waits at most `deadline_s` for it."""

    def __init__(self, folder: str, url: str, interval_s: float = 10.0, deadline_s: float = 120.0):
        self.folder, self.url, self.interval_s, self.deadline_s = folder, url.rstrip("/"), interval_s, deadline_s
        self.request_timeout_s = min(max(deadline_s / 3, REQUEST_TIMEOUT_RANGE_S[0]), REQUEST_TIMEOUT_RANGE_S[1])
        self.fs, self.path = filesystem(self.url, self.request_timeout_s)
        self.uploaded: dict[str, tuple[int, int]] = {}  # name -> (size, mtime_ns) of the uploaded version
        self.failures: dict[str, int] = {}
        self.current: str | None = None  # the file being uploaded, for close()'s progress lines
        self.backoff_s = 1.0  # the first pause between close()'s passes; doubled after each
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._give_up = threading.Event()  # close()'s deadline passed: no further request
        self._lock = threading.Lock()  # one pass at a time
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
        pause = self.backoff_s  # close() was called: the last passes, until all is uploaded or close() gives up
        while self.sync() and not self._give_up.wait(pause):
            pause = min(2 * pause, 10.0)

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

    def _put(self, rel: str) -> None:
        from fsspec.asyn import AsyncFileSystem

        local, remote = os.path.join(self.folder, rel), f"{self.path}/{rel.replace(os.sep, '/')}"
        if isinstance(self.fs, AsyncFileSystem):
            # The whole upload is capped too: a store that accepts the connection and never answers "Expect:
            # 100-continue" (a stopped server) escapes the read timeout.
            timeout = self.request_timeout_s + os.path.getsize(local) / MIN_UPLOAD_BYTES_PER_S
            self.fs.put_file(local, remote, timeout=timeout)
        else:
            self.fs.put_file(local, remote)

    def sync(self) -> list[str]:
        """One pass: upload what changed. Returns the names that failed or were not tried (kept for the next
        pass): after a timeout the store is not answering, so the rest of the pass would only wait too."""
        with self._lock:
            pending, failed = self.changed(), []
            for i, (rel, signature) in enumerate(pending):
                if self._give_up.is_set():
                    return failed + [name for name, _ in pending[i:]]
                self.current = rel
                try:
                    self._put(rel)
                except FileNotFoundError:
                    continue
                except Exception as e:  # noqa: BLE001 - any storage error is retried, never fatal to training
                    count = self.failures[rel] = self.failures.get(rel, 0) + 1
                    if count == 1 or count % 10 == 0:
                        why = str(e) or f"no answer within {self.request_timeout_s:g} s"
                        log.warning("upload of %s to %s failed (attempt %d, will retry): %s: %s", rel, self.url,
                                    count, type(e).__name__, why)
                    failed.append(rel)
                    if is_timeout(e):
                        return failed + [name for name, _ in pending[i + 1:]]
                    continue
                finally:
                    self.current = None
                self.uploaded[rel] = signature
                self.failures.pop(rel, None)
            return failed

    def close(self) -> list[str]:
        """Stop the thread after a last upload of everything, retried with growing pauses; wait at most
        `deadline_s`, logging what it waits for every few seconds. Returns the names not uploaded."""
        self._stop.set()
        self._wake.set()
        if self._thread.ident is None:  # never started: this is a one-off upload
            self._thread.start()
        begun = time.monotonic()
        every = min(5.0, max(self.deadline_s / 3, 0.5))
        while self._thread.is_alive() and (left := begun + self.deadline_s - time.monotonic()) > 0:
            self._thread.join(min(every, left))
            if self._thread.is_alive() and time.monotonic() < begun + self.deadline_s:
                log.info("waiting for %s: %d file(s) left to reach %s, %.0f of %g s (output.mirror_deadline_s)",
                         self.current or "the next try", len(self.changed()), self.url, time.monotonic() - begun,
                         self.deadline_s)
        self._give_up.set()  # a request still running is abandoned with its daemon thread
        return [name for name, _ in self.changed()]
