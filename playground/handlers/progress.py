"""ProgressBar: a tqdm bar per epoch on a terminal, plain periodic log lines elsewhere; rank 0 only."""
from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from playground.events import EventHandler, Phase

if TYPE_CHECKING:
    from playground.anyexp import AnyExp

log = logging.getLogger(__name__)


class ProgressBar(EventHandler):
    """Iterations within the epoch, ETA, the latest loss and samples/s.

    bar: true draws a tqdm bar on stderr, false logs a plain line at the first recorded iteration after every
    `log_every_s` seconds instead, null (the default) draws the bar when stderr is a terminal (or a Jupyter
    kernel) and logs otherwise.
    metrics: the recorded values shown; null shows every train metric with "loss" in its name, and
    samples_per_sec. While the bar shows, log lines are printed above it rather than through it.
    Added to every run unless output.progress_bar is false or the opts list a ProgressBar themselves.
    """

    phase = Phase.REPORT

    def __init__(self, bar: bool | None = None, log_every_s: float = 30.0, metrics: list[str] | None = None):
        self.bar, self.log_every_s, self.metrics = bar, log_every_s, metrics
        self.use_bar = _interactive() if bar is None else bar
        self.recorded_iterations_only = not self.use_bar  # log lines show recorded values: only those iterations
        self._on = False
        self._tqdm: Any = None
        self._bar_obj: Any = None
        self._names: list[str] = []  # the values shown
        self._redirect: Any = None
        self._epoch_started = self._last_log = 0.0
        self._first_iteration = 0

    def on_train_begin(self, exp: AnyExp) -> None:
        self._close()  # what an earlier run that failed left open (the Estimator reuses handlers)
        self._on, self._tqdm = exp.rank == 0, None
        if not self._on:
            return
        train = [name for name, (is_train, _) in getattr(exp, "meters", {}).items() if is_train]
        self._names = self.metrics or [name for name in train if "loss" in name] + ["samples_per_sec"]
        if self.use_bar:
            try:
                from tqdm.auto import tqdm  # a widget in a notebook (ipywidgets), a text bar elsewhere
                from tqdm.contrib.logging import logging_redirect_tqdm
            except ImportError:
                log.warning("ProgressBar: tqdm is not installed; logging progress lines instead (pip install tqdm)")
            else:
                self._tqdm = tqdm
                self._redirect = logging_redirect_tqdm()
                self._redirect.__enter__()

    def on_epoch_begin(self, exp: AnyExp) -> None:
        if not self._on:
            return
        self._epoch_started = self._last_log = time.perf_counter()
        self._first_iteration = exp.state.iteration
        if self._tqdm is not None:
            self._close_bar()
            # A terminal that reports no width (a fresh pseudo-terminal, `docker run -t`) would get an empty bar.
            width = {"dynamic_ncols": True} if _columns() else {"ncols": 100, "nrows": 20}
            self._bar_obj = self._tqdm(total=exp.epoch_iterations, initial=exp.state.iteration, unit="it",
                                       desc=f"epoch {exp.state.epoch + 1}/{exp.info.num_epochs}",
                                       file=sys.stderr, **width)

    def on_iteration_end(self, exp: AnyExp) -> None:
        if not self._on:
            return
        if self._bar_obj is not None:
            if exp.row is not None:  # a recorded iteration
                self._bar_obj.set_postfix(self._shown(exp), refresh=False)
            self._bar_obj.update(1)
        elif self._tqdm is None and exp.row is not None and time.perf_counter() - self._last_log >= self.log_every_s:
            self._last_log = time.perf_counter()
            self._log_line(exp)

    def _shown(self, exp: AnyExp) -> dict[str, str]:
        return {name: f"{exp.latest[name]:.4g}" for name in self._names if name in exp.latest}

    def _log_line(self, exp: AnyExp) -> None:
        done, total = exp.state.iteration, exp.epoch_iterations
        rate = (done - self._first_iteration) / max(time.perf_counter() - self._epoch_started, 1e-9)
        eta = dt.timedelta(seconds=round((total - done) / rate)) if rate > 0 else "?"
        shown = " ".join(f"{k}={v}" for k, v in self._shown(exp).items())
        log.info("epoch %d/%d iteration %d/%d (%d%%) %s, epoch ETA %s", exp.state.epoch + 1,
                 exp.info.num_epochs, done, total, 100 * done // max(total, 1), shown, eta)

    def on_epoch_end(self, exp: AnyExp) -> None:
        self._close_bar()

    def on_train_end(self, exp: AnyExp) -> None:
        self._close()

    def _close(self) -> None:
        self._close_bar()
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None

    def _close_bar(self) -> None:
        bar, self._bar_obj = self._bar_obj, None
        if bar is not None:
            bar.close()


def _columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):  # not a terminal, or a stream without a file descriptor
        return 0


def _interactive() -> bool:
    """stderr is a terminal, or this is a Jupyter kernel (which renders tqdm's carriage returns)."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules
