"""Shared fixtures: the MLP example made tiny, and running the real `playground` command in a subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "mlp_synthetic.json"


def example_opts() -> dict:
    return json.loads(EXAMPLE.read_text())["opts"]


def seed_command_opts(**model_param) -> dict:
    """The seed README's ResNet-50 command (tests/seed_command.json) on CPU, with `model_param` overrides."""
    opts = json.loads((ROOT / "tests" / "seed_command.json").read_text())["opts"]
    opts["distributed"]["num_gpus"] = 0
    opts["model_param"].update(model_param)
    return opts


@pytest.fixture(autouse=True)
def runs_root(tmp_path, monkeypatch):
    """Every test's lab book lives in its own temporary runs root, never in ./runs."""
    monkeypatch.setenv("PLAYGROUND_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture
def tiny_opts(tmp_path) -> dict:
    """The MLP example, small enough to train in well under a second: 10 iterations per epoch, 2 epochs, every
    iteration recorded."""
    opts = example_opts()
    opts["epoch_iter"].update(num_train_sample_per_epoch=640, num_test_sample=256, num_epochs=2,
                              num_train_iteration_per_test=5)
    opts["output"]["record_every_iters"] = 1
    opts["output"]["checkpoint_folder"] = str(tmp_path / "run")
    return opts


def playground(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run the real command line, as a user would, from the repository root."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "playground", *args], cwd=kwargs.pop("cwd", ROOT), env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def write_opts(tmp_path: Path, opts: dict, name: str = "opts.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps({"opts": opts}))
    return str(path)
