"""Commands that train nothing start without torch (about a second to import): `playground make-lmdb` reads,
decodes, resizes and encodes images with OpenCV alone."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

cv2 = pytest.importorskip("cv2")
from resnetdemo.lmdb_format import LmdbReader  # noqa: E402 (needs the vision extra, like cv2)

# The real command in a fresh interpreter; it reports what it imported, whatever it returns or raises.
SCRIPT = """
import sys
from playground import cli
try:
    code = cli.main(sys.argv[1:])
except SystemExit as e:
    code = e.code
finally:
    print("heavy imports:", sorted(m for m in ("torch", "playground.anyexp") if m in sys.modules))
sys.exit(code)
"""


def playground_imports(*args: str) -> tuple[int, str]:
    result = subprocess.run([sys.executable, "-c", SCRIPT, *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return result.returncode, result.stdout + result.stderr


def test_make_lmdb_help_and_builds_do_not_import_torch(tmp_path):
    for name in ("cats", "dogs"):
        (tmp_path / "src" / name).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(tmp_path / "src" / name / f"{i}.png"), np.full((20, 30, 3), 40 * i, np.uint8))
    for args in (["--help"], ["--synthetic", "shapes", str(tmp_path / "shapes"), "--num", "4", "--jobs", "1"],
                 [str(tmp_path / "src"), str(tmp_path / "folder"), "--jobs", "1"],
                 [str(tmp_path / "src"), str(tmp_path / "resized"), "--resize-shorter", "10", "--jobs", "1"]):
        code, output = playground_imports("make-lmdb", *args)
        assert code == 0 and "heavy imports: []" in output, (args, output)
    assert (tmp_path / "folder" / "data.mdb").exists() and (tmp_path / "shapes" / "data.mdb").exists()
    assert LmdbReader(tmp_path / "resized").meta["min_shorter_side"] == 10


def test_the_search_package_and_its_report_module_import_neither_torch_nor_optuna():
    """The lab book reads searches through them (ExperimentRepository.search): what it never runs, it never loads."""
    script = ("import sys, playground.search, playground.search.report; "
              "print(sorted({'torch', 'optuna'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr
