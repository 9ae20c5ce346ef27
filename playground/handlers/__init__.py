"""Built-in event handlers, one per file. Opts name them in `output.handlers` (`{"handler_py": "EarlyStopping",
"kargs": {...}}`, resolved through module_map.py like any component); the Python API passes instances.

A handler is a `playground.events.EventHandler` subclass: it overrides the `on_<event>(exp)` methods it needs,
may call `exp.request_stop(reason)` or `exp.request_checkpoint()`, and returns in `state_dict()` whatever it must
remember across a resume. Handlers run in list order at each event, after the experiment's own hook.
"""
from playground.handlers.best_checkpoint import BestCheckpoint
from playground.handlers.dump_graph import DumpGraph
from playground.handlers.early_stopping import EarlyStopping
from playground.handlers.lr_monitor import LRMonitor
from playground.handlers.model_statistics import ModelStatistics
from playground.handlers.nan_guard import NonFiniteLossError, TerminateOnNaN
from playground.handlers.profiler import Profiler
from playground.handlers.progress import ProgressBar
from playground.handlers.reports import LogReport, PrintReport
from playground.lab.recorder import Recorder

__all__ = ["BestCheckpoint", "DumpGraph", "EarlyStopping", "LRMonitor", "LogReport", "ModelStatistics",
           "NonFiniteLossError", "PrintReport", "Profiler", "ProgressBar", "TerminateOnNaN", "default_handlers"]


def default_handlers(opts: dict, handlers: list[tuple[dict, type]]) -> list[tuple[dict, type]]:
    """`handlers` plus the ones every run gets: first the lab book's Recorder (train.csv, test.csv, TensorBoard;
    first, so each recorded row is on disk before another handler can fail the run at the same event), and last
    a ProgressBar unless output.progress_bar is false or one is listed already (a subclass counts)."""
    every_run = [({"handler_py": "playground.lab.Recorder", "kargs": {}}, Recorder), *handlers]
    if opts["output"]["progress_bar"] and not any(
            isinstance(cls, type) and issubclass(cls, ProgressBar) for _, cls in handlers):
        every_run.append(({"handler_py": "ProgressBar", "kargs": {}}, ProgressBar))
    return every_run
