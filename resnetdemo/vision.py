"""OpenCV, LMDB and zlib-ng, the image pipeline's libraries: the `vision` extra, not core dependencies. zlib-ng's
CRC-32 equals zlib's at 10-20 times its speed: every record read is checked.

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
try:
    from zlib_ng.zlib_ng import crc32
except ImportError:
    raise _missing("zlib-ng", "zlib_ng") from None

__all__ = ["cv2", "crc32", "lmdb"]
