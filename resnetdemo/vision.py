"""OpenCV and LMDB, the image pipeline's libraries: the `vision` extra, not core dependencies.

The image modules import them from here, so a missing one stops `gfs_IN1k`/`lmdb_input` (at --dry-run) and
`playground make-lmdb` (at start) with the extra to install, not an ImportError.
"""
from playground.errors import UsageError

INSTALL = "pip install 'torch-playground[vision]'"


def _missing(package: str, module: str) -> UsageError:
    return UsageError(f"the image pipeline (gfs_IN1k, lmdb_input, make-lmdb) needs {package} (import {module}), "
                      f"which is not installed: {INSTALL}")


try:
    import cv2
except ImportError:
    raise _missing("opencv-python-headless", "cv2") from None
try:
    import lmdb
except ImportError:
    raise _missing("lmdb", "lmdb") from None

__all__ = ["cv2", "lmdb"]
