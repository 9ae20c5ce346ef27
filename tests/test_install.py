"""A light install: the framework runs without the image pipeline's libraries (the `vision` extra), and using the
pipeline without them names the extra to install; the package's version has one home."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest

from conftest import EXAMPLE, ROOT

INSTALL = "pip install 'torch-playground[vision]'"


def without(modules: list[str], argv: list[str], cwd) -> subprocess.CompletedProcess:
    """The `playground` command in a process where `modules` cannot be imported, as when they are not installed."""
    code = (f"import sys\nfor name in {modules!r}:\n    sys.modules[name] = None  # import raises ImportError\n"
            f"from playground import cli\nsys.exit(cli.main({argv!r}))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_framework_trains_without_the_vision_libraries(tmp_path):
    result = without(["cv2", "lmdb", "zlib_ng"], ["run", "--parameters-json", str(EXAMPLE), "--set", "epoch_iter.num_epochs=1",
                                       "--set", f"output.checkpoint_folder={tmp_path / 'run'}"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "results.json").exists()


@pytest.mark.parametrize("missing, package", [("cv2", "opencv-python-headless (import cv2)"), ("lmdb", "lmdb"),
                                              ("zlib_ng", "zlib-ng (import zlib_ng)")])
def test_the_lmdb_input_without_its_library_names_the_extra_at_dry_run(tmp_path, missing, package):
    result = without([missing], ["run", "--parameters-json", str(ROOT / "examples" / "resnetdemo_cpu.yaml"),
                                 "--dry-run"], tmp_path)
    assert result.returncode == 2, result.stderr
    assert (f"playground: error: input.input_name_py = 'gfs_IN1k': the image pipeline (gfs_IN1k, lmdb_input, "
            f"make-lmdb) needs {package}") in result.stderr
    assert f"which is not installed: {INSTALL}" in result.stderr and "Traceback" not in result.stderr


def test_make_lmdb_without_opencv_names_the_extra_and_writes_nothing(tmp_path):
    result = without(["cv2"], ["make-lmdb", "--synthetic", "shapes", "out", "--num", "4"], tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == ("playground: error: the image pipeline (gfs_IN1k, lmdb_input, make-lmdb) needs "
                                     f"opencv-python-headless (import cv2), which is not installed: {INSTALL}")
    assert not (tmp_path / "out").exists()


def test_core_dependencies_leave_out_the_vision_extra_and_the_test_extra_has_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    assert "opencv" not in core and "lmdb" not in core
    extras = project["optional-dependencies"]
    assert {"opencv-python-headless>=4.8", "lmdb>=1.4", "zlib-ng>=0.4"} <= set(extras["vision"])
    assert "torch-playground[vision]" in extras["test"]
    assert "pip install -e '.[vision]'" in (ROOT / "README.md").read_text()


def test_the_version_has_one_home_and_the_package_is_typed():
    import playground

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "playground.__version__"}
    assert (ROOT / "playground" / "py.typed").exists()
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["playground"]
    assert playground.__version__
