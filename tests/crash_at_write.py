"""Runs `playground` with a fault injected at one exact file write, for the crash-point tests:

    python tests/crash_at_write.py kill|fill NAME -- run --parameters-json ...

kill: SIGKILL this process just before the first write of a file named NAME (an atomic write, so the file is
never there); fill: fill the file system first, so that write (and every later one) meets a real ENOSPC.
"""
from __future__ import annotations

import os
import signal
import sys

from playground import checkpoint, cli

mode, name, _, *argv = sys.argv[1:]
write = checkpoint.atomic_write


def faulty_write(path: str, data: bytes) -> None:
    if os.path.basename(path) == name:
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        with open(os.path.join(os.path.dirname(path), "filler"), "wb") as f:  # until the disk is full
            try:
                while True:
                    f.write(b"\0" * (1 << 16))
                    f.flush()
            except OSError:
                pass
    write(path, data)


checkpoint.atomic_write = faulty_write
sys.exit(cli.main(argv))
