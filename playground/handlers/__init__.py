"""Built-in event handlers, one per file. Opts name them in `output.handlers` (`{"handler_py": "EarlyStopping",
"kargs": {...}}`, resolved through module_map.py like any component); the Python API passes instances.

A handler is a `playground.events.EventHandler` subclass: it overrides the `on_<event>(exp)` methods it needs,
may call `exp.request_stop(reason)` or `exp.request_checkpoint()`, and returns in `state_dict()` whatever it must
remember across a resume. At each event, after the experiment's own hook, handlers run by their `phase`
(playground.events.Phase), and in list order within a phase.
"""
from playground.handlers.best_checkpoint import BestCheckpoint
from playground.handlers.dump_graph import DumpGraph
from playground.handlers.early_stopping import EarlyStopping
from playground.handlers.ema import EMA
from playground.handlers.lr_monitor import LRMonitor
from playground.handlers.mlflow_logger import MLflowLogger
from playground.handlers.model_statistics import ModelStatistics
from playground.errors import NonFiniteLossError
from playground.handlers.nan_guard import TerminateOnNaN
from playground.handlers.profiler import Profiler
from playground.handlers.progress import ProgressBar
from playground.handlers.reports import LogReport, PrintReport
from playground.handlers.wandb_logger import WandbLogger
from playground.lab.recorder import Recorder

__all__ = ["BestCheckpoint", "DumpGraph", "EMA", "EarlyStopping", "LRMonitor", "LogReport", "MLflowLogger",
           "ModelStatistics", "NonFiniteLossError", "PrintReport", "Profiler", "ProgressBar", "TerminateOnNaN",
           "WandbLogger", "default_handlers"]


def default_handlers(progress_bar: bool, handlers: list[tuple[dict, type]]) -> list[tuple[dict, type]]:
    """`handlers` (opts entry, class or instance) plus the ones every run gets: the lab book's Recorder (train.csv,
    test.csv, TensorBoard) unless one is listed, and a ProgressBar when `progress_bar` and none is listed (a
    subclass counts). Their phases place them: the Recorder writes each row before any handler can fail the
    run at the same event, the bar reports last."""
    def listed(kind: type) -> bool:
        return any(issubclass(h, kind) if isinstance(h, type) else isinstance(h, kind) for _, h in handlers)

    every_run = list(handlers)
    if not listed(Recorder):
        every_run.insert(0, ({"handler_py": "Recorder", "kargs": {}}, Recorder))
    if progress_bar and not listed(ProgressBar):
        every_run.append(({"handler_py": "ProgressBar", "kargs": {}}, ProgressBar))
    return every_run
