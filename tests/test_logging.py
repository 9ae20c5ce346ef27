"""Logs: a run's log.txt holds playground's INFO records whatever the caller's logging setup, the caller's own
handlers see what they saw before, and the command's -v/-q set what reaches the terminal."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT, example_opts, playground, write_opts

FIT = """
import logging, sys, torch
{setup}
from playground.estimator import Estimator
x, y = torch.randn(32, 4), torch.randint(3, (32,))
Estimator(torch.nn.Linear(4, 3), device="cpu", progress_bar=False).fit((x, y), epochs=1, batch_size=8,
                                                                     checkpoint_folder=sys.argv[1])
ours = logging.getLogger("playground")
print("after:", logging.getLevelName(ours.level), ours.propagate, len(ours.handlers))
"""


def fit_in_python(tmp_path, setup: str) -> tuple[subprocess.CompletedProcess, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    folder = tmp_path / "fit"
    result = subprocess.run([sys.executable, "-c", FIT.format(setup=setup), str(folder)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result, (folder / "log.txt").read_text()


def test_fit_from_python_without_logging_setup_writes_its_info_records(tmp_path):
    result, log = fit_in_python(tmp_path, "")
    assert "INFO playground: done: results in" in log and "INFO playground.checkpoint: checkpoint " in log
    assert "INFO" not in result.stderr  # nothing configured: the terminal stays as quiet as before
    assert "after: NOTSET True 0" in result.stdout  # the caller's logging config is as it was


def test_fit_under_a_warning_level_setup_keeps_the_callers_handlers_at_warning(tmp_path):
    result, log = fit_in_python(tmp_path, "logging.basicConfig(level=logging.WARNING, stream=sys.stderr)\n"
                                          "logging.getLogger('playground').warning('before fit')")
    assert "done: results in" in log and "before fit" not in log
    assert "WARNING:playground:before fit" in result.stderr and "done: results in" not in result.stderr
    assert "after: NOTSET True 0" in result.stdout


def test_quiet_and_verbose_flags_set_what_reaches_the_terminal(tmp_path):
    opts = example_opts()
    opts["epoch_iter"].update(num_train_sample_per_epoch=64, num_test_sample=64, num_epochs=1)
    opts["output"].update(checkpoint_folder=str(tmp_path / "quiet"), plots=[])
    quiet = playground("-q", "run", "--parameters-json", write_opts(tmp_path, opts))
    assert quiet.returncode == 0, quiet.stderr
    assert " INFO " not in quiet.stderr
    assert "INFO playground: done: results in" in (tmp_path / "quiet" / "log.txt").read_text()
    opts["output"]["checkpoint_folder"] = str(tmp_path / "verbose")
    verbose = playground("--verbose", "run", "--parameters-json", write_opts(tmp_path, opts))
    assert verbose.returncode == 0, verbose.stderr
    assert " INFO " in verbose.stderr and " DEBUG " in verbose.stderr


def test_version_prints_the_installed_version():
    from playground import __version__

    result = playground("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"playground {__version__}"
