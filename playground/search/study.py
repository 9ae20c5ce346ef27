"""The Optuna side of a search: samplers and pruners by name, storages by URL or path, the study itself.

Optuna is imported here, and only when a search runs or is checked: `import playground` stays light.

    "algorithm": {"type": "tpe", "seed": 1, "n_startup_trials": 5}   Optuna's sampler and its keyword arguments;
                                                                     "type" may be a dotted path to any sampler
    "pruner": {"type": "median", "n_warmup_steps": 20}               likewise for pruners
    storage: a journal file (the default: <search folder>/journal.log), sqlite:///path, postgresql://..., mysql://...

A grid draws nothing: every point is an enqueued trial, claimed atomically by whichever worker asks next (Optuna's
GridSampler may hand one point to two workers, and ends with study.stop(), which works only inside optimize()).
"""
from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import os
import random
import time
from typing import Any

from playground.errors import NotFound, UsageError
from playground.lab.tags import local_root, runs_root

SAMPLERS = {
    "random": "optuna.samplers.RandomSampler",
    "grid": "optuna.samplers.RandomSampler",  # never draws: see the module docstring
    "tpe": "optuna.samplers.TPESampler",
    "cmaes": "optuna.samplers.CmaEsSampler",
    "nsga2": "optuna.samplers.NSGAIISampler",
    "nsga3": "optuna.samplers.NSGAIIISampler",
    "qmc": "optuna.samplers.QMCSampler",
    "gp": "optuna.samplers.GPSampler",
    "bruteforce": "optuna.samplers.BruteForceSampler",
}
SINGLE_OBJECTIVE = ("cmaes",)  # Optuna raises on a study of several objectives
FIXED_SEED = ("qmc",)          # the seed scrambles one sequence that the trial number indexes: never re-derived
PRUNERS = {
    "none": "optuna.pruners.NopPruner",
    "median": "optuna.pruners.MedianPruner",
    "percentile": "optuna.pruners.PercentilePruner",
    "successive_halving": "optuna.pruners.SuccessiveHalvingPruner",
    "hyperband": "optuna.pruners.HyperbandPruner",
    "threshold": "optuna.pruners.ThresholdPruner",
    "wilcoxon": "optuna.pruners.WilcoxonPruner",
}
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")


def search_folder(search_id: str, root: str | None = None) -> str:
    """Where search `search_id` keeps search.json and its journal: <runs root>/_searches/<id> (the default runs
    root without `root`; for a URL root, in the local staging folder: a journal needs a file system)."""
    return os.path.join(local_root(root or runs_root()), "_searches", search_id)


def storage_of(folder: str, storage: str | None = None) -> str:
    """The search's storage: `storage`, else the one storage.txt in its folder names, else its journal file."""
    if storage:
        return storage if "://" in storage else os.path.abspath(storage)
    named = os.path.join(folder, "storage.txt")
    if os.path.exists(named):
        with open(named, encoding="utf-8") as f:
            return f.read().strip()
    return os.path.abspath(os.path.join(folder, "journal.log"))


def load_study(search_id: str, root: str | None = None, storage: str | None = None) -> Any:
    """The optuna.Study of search `search_id` under runs root `root` (default: the default one), from `storage` or
    the one its folder records (playground.search.load_study; here, so that the lab can read a study without
    importing the driver)."""
    import optuna

    folder = search_folder(search_id, root)
    url = storage_of(folder, storage)
    if "://" not in url and not os.path.exists(url):
        raise NotFound(f"no search {search_id} in {os.path.dirname(folder)} (no {url}); `playground search` prints "
                       "the id of each search it runs")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=search_id, storage=open_storage(url))
    except KeyError:
        raise NotFound(f"{url} holds no study named {search_id}") from None


def _class(kind: str, table: dict[str, str], name: Any, where: str) -> tuple[type | None, list[str]]:
    """The sampler or pruner class `name` names (a table name or a dotted path), or the problem."""
    from playground.registry import import_path

    if not isinstance(name, str) or not name:
        return None, [f"{where}.type: expected one of {', '.join(table)}, or a dotted path to an Optuna {kind}"]
    path = table.get(name, name)
    try:
        found = import_path(path) if "." in path else None
    except (ImportError, AttributeError):
        found = None
    base = _optuna_base(kind)
    if not (isinstance(found, type) and issubclass(found, base)):
        close = difflib.get_close_matches(name, table, n=1, cutoff=0.6)
        return None, [f"{where}.type: {name!r} is not a known {kind}" + (f"; did you mean {close[0]!r}?" if close
                      else ";") + f" Known: {', '.join(table)}, or a dotted path to an optuna.{kind}s."
                      f"{base.__name__} subclass"]
    return found, []


def _optuna_base(kind: str) -> type:
    import optuna

    return optuna.samplers.BaseSampler if kind == "sampler" else optuna.pruners.BasePruner


def _build(cls: type, kargs: dict, where: str) -> tuple[Any, list[str]]:
    """An instance of `cls` with `kargs`, or the problem (constructors check their arguments, and import optional
    packages such as cmaes or scipy)."""
    try:
        inspect.signature(cls).bind(**kargs)
        return cls(**kargs), []
    except TypeError as e:
        return None, [f"{where}: {e} for {cls.__name__}; see Optuna's documentation of it"]
    except ImportError as e:
        return None, [f"{where}.type: {cls.__name__} needs a package that is not installed ({e}); install it"]
    except (ValueError, RuntimeError) as e:
        return None, [f"{where}: {cls.__name__} refused its arguments: {e}"]


def sampler_kargs(algorithm: dict) -> dict[str, Any]:
    return {k: v for k, v in algorithm.items() if k not in ("type", "seed")}


def algorithm_problems(algorithm: Any, objectives: int) -> list[str]:
    if not isinstance(algorithm, dict):
        return ['search.algorithm: expected an object such as {"type": "tpe", "seed": 1}']
    seed = algorithm.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32):
        return [f"search.algorithm.seed: expected an integer from 0 to 2**32 - 1, got {json.dumps(seed)}"]
    name = algorithm.get("type", "tpe")
    cls, problems = _class("sampler", SAMPLERS, name, "search.algorithm")
    if cls is None:
        return problems
    if name in SINGLE_OBJECTIVE and objectives > 1:
        return [f"search.algorithm.type: {name} optimises one objective, and search.objectives has {objectives}; "
                "use nsga2, tpe or random for a Pareto front, or keep one objective"]
    if name == "grid" and sampler_kargs(algorithm):
        return [f"search.algorithm: a grid takes no arguments but seed, got {', '.join(sampler_kargs(algorithm))}"]
    return _build(cls, sampler_kargs(algorithm), "search.algorithm")[1]


def pruner_problems(pruner: Any, objectives: list) -> list[str]:
    if not isinstance(pruner, dict):
        return ['search.pruner: expected an object such as {"type": "median"}']
    name = pruner.get("type", "none")
    cls, problems = _class("pruner", PRUNERS, name, "search.pruner")
    if cls is None:
        return problems
    if name != "none" and len(objectives) > 1:
        return [f"search.pruner: Optuna cannot prune a study of {len(objectives)} objectives (Trial.report is "
                'single-objective); set "type": "none" or keep one objective']
    if name != "none" and objectives and objectives[0].is_cost:
        return [f"search.pruner: pruning compares the objective after each test pass, and {objectives[0].metric} "
                'is measured once per run; set "type": "none" or optimise a recorded metric']
    return _build(cls, {k: v for k, v in pruner.items() if k != "type"}, "search.pruner")[1]


def storage_problems(storage: Any) -> list[str]:
    if storage is None:
        return []
    if not isinstance(storage, str) or not storage.strip():
        return [f"search.storage: expected a database URL or a journal file path, got {json.dumps(storage)}"]
    if "://" in storage:
        scheme = storage.split("://", 1)[0].split("+", 1)[0]
        if scheme not in RDB_SCHEMES:
            return [f"search.storage: {scheme}:// is no database Optuna stores studies in; give sqlite:///path, "
                    "postgresql://user@host/db, mysql://... or a journal file path"]
    elif os.path.isdir(storage):
        return [f"search.storage: {storage} is a folder; give a journal file path such as {storage}/journal.log"]
    return []


def sampler_seed(seed: int | None, trials_so_far: int) -> int | None:
    """The seed of the sampler that draws the next trial: derived from the search's seed and the number of trials
    already in the study, so that a restarted search draws what an uninterrupted one would have (Optuna does not
    store a sampler's random state)."""
    if seed is None:
        return None
    return int.from_bytes(hashlib.sha256(f"{seed}:{trials_so_far}".encode()).digest()[:4], "big")


def build_sampler(algorithm: dict, trials_so_far: int) -> Any:
    name = algorithm.get("type", "tpe")
    cls = _class("sampler", SAMPLERS, name, "search.algorithm")[0]
    seed = algorithm.get("seed") if name in FIXED_SEED else sampler_seed(algorithm.get("seed"), trials_so_far)
    kargs = sampler_kargs(algorithm)
    if "seed" in inspect.signature(cls).parameters:
        kargs["seed"] = seed
    return cls(**kargs)


def build_pruner(pruner: dict) -> Any:
    cls = _class("pruner", PRUNERS, pruner.get("type", "none"), "search.pruner")[0]
    return cls(**{k: v for k, v in pruner.items() if k != "type"})


def open_storage(storage: str) -> Any:
    """Optuna's storage for a URL (RDBStorage) or a journal file path (JournalStorage, its last line repaired)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    if "://" in storage:
        return _rdb_storage(storage)
    os.makedirs(os.path.dirname(os.path.abspath(storage)), exist_ok=True)
    lock = JournalFileSymlinkLock(storage)
    repair_journal(storage, lock)
    return optuna.storages.JournalStorage(JournalFileBackend(storage, lock_obj=lock))


def _rdb_storage(url: str) -> Any:
    """RDBStorage(url). Workers starting together on a new database may race to create Optuna's tables; the
    loser finds them made when it tries again."""
    import optuna
    from sqlalchemy.exc import IntegrityError

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(3):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except IntegrityError:
            if attempt == 2:
                raise
            time.sleep(0.5 + random.random())
        except Exception as e:  # noqa: BLE001 - SQLAlchemy's errors, a missing driver: one line naming the URL
            raise UsageError(f"search storage {url}: cannot open it ({type(e).__name__}: "
                             f"{str(e).strip().splitlines()[0]}); check the URL, the server and its driver") from None


def repair_journal(path: str, lock: Any) -> None:
    """Cut a torn last record (a writer killed mid-line) off the journal, under its lock: Optuna skips such a line
    only while it is last, and the next record would be glued to it, making the whole journal unreadable."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    lock.acquire()
    try:
        with open(path, "rb+") as f:
            f.seek(max(0, os.path.getsize(path) - 1))
            if f.read(1) == b"\n":
                return
            data = f.seek(0) or f.read()
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())
    finally:
        lock.release()
