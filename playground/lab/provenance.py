"""What an experiment ran: the source state of the user's working directory and the environment.

Files: `source.json` (commit, branch, untracked files, or a note saying why the source state is unknown),
`source.git-patch` (`git diff HEAD`: staged and unstaged changes to tracked files) and `environment.json`.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys

from playground import checkpoint
from playground.lab.status import hostname

GIT_TIMEOUT_S = 30


def _git(cwd: str, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
                          check=True)
    return done.stdout


def source_state(cwd: str | None = None) -> tuple[dict, str | None]:
    """(source.json contents, the patch or None when not in a git repository) for `cwd`."""
    cwd = os.path.abspath(cwd or os.getcwd())
    info: dict = {"cwd": cwd, "git": False}
    if shutil.which("git") is None:
        info["note"] = "git is not installed, so the source state of the working directory is not recorded"
        return info, None
    try:
        info["toplevel"] = _git(cwd, "rev-parse", "--show-toplevel").strip()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        info["note"] = f"{cwd} is not in a git repository, so the source state is not recorded"
        return info, None
    info["git"] = True
    try:
        info["commit"] = _git(cwd, "rev-parse", "HEAD").strip()
        info["branch"] = _git(cwd, "rev-parse", "--abbrev-ref", "HEAD").strip()
        info["subject"] = _git(cwd, "log", "-n", "1", "--format=%s").strip()
        patch = _git(cwd, "diff", "HEAD", "--no-color", "--no-ext-diff", "--binary")
    except subprocess.CalledProcessError:  # a repository without commits yet
        info.update(commit=None, note="the repository has no commit yet; the patch is empty")
        patch = ""
    except subprocess.TimeoutExpired:
        info["note"] = f"git did not answer within {GIT_TIMEOUT_S} s; the patch is not recorded"
        patch = ""
    try:
        info["untracked"] = _git(cwd, "ls-files", "--others", "--exclude-standard").splitlines()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        info["untracked"] = []
    info["dirty"] = bool(patch)
    info["patch_sha256"] = hashlib.sha256(patch.encode()).hexdigest()
    return info, patch


def _version(module: str) -> str | None:
    mod = sys.modules.get(module)
    if mod is None:
        try:
            mod = __import__(module)
        except ImportError:
            return None
    return getattr(mod, "__version__", None)


def devices() -> list[str]:
    """GPU names from nvidia-smi, without initialising CUDA in this process (a later fork must stay safe)."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=GIT_TIMEOUT_S, check=True).stdout
            return [line.strip() for line in out.splitlines() if line.strip()]
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
            pass
    return []


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """Versions, host, devices and command line of this process."""
    import torch

    return {
        "python": sys.version.split()[0], "executable": sys.executable, "platform": platform.platform(),
        "torch": torch.__version__, "cuda": torch.version.cuda, "numpy": _version("numpy"),
        "playground": _version("playground"), "hostname": hostname(), "cpu": cpu_name(),
        "cpu_count": os.cpu_count(), "gpus": devices(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "argv": list(sys.argv), "cwd": os.getcwd(), "pid": os.getpid(),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("PLAYGROUND_", "OMP_", "MKL_"))},
    }


def write(folder: str, opts: dict) -> dict:
    """The first attempt's record: opts.json, source.json, source.git-patch, environment.json. Returns source.json."""
    source, patch = source_state()
    files = {"opts.json": json.dumps(opts, indent=2), "source.json": json.dumps(source, indent=1),
             "environment.json": json.dumps(environment(), indent=1)}
    if patch is not None:
        files["source.git-patch"] = patch
    for name, text in files.items():
        checkpoint.atomic_write(os.path.join(folder, name), text.encode())
    return source
