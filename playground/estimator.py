"""Estimator: fit / evaluate / predict for a network built in Python, run by the same AnyExp loop as the opts.

`Estimator.fit` hands the loop the user's own objects as its parts (network, losses, optimizer, data, meters,
handlers) and runs it as `playground run` does: the same loop, handlers, checkpoints, resume and run folder.
Mistakes the Gluon Fit API design lists (network outputs vs losses vs metrics, label vs output shapes, data
yielding the wrong number of items) are found on one batch before the first step and raised as EstimatorError.
How data, outputs and metric specs are read is in estimator_io.py.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from playground import data, distributed, lab, opts as opts_lib, runner
from playground.estimator_io import (as_outputs, blobs_of, check_shapes, concat, dataset_of, describe_shape,
                                     inputs_of, iterate, metric_meters, named_losses)
from playground.anyexp import AnyExp
from playground.errors import EstimatorError, OptsError
from playground.events import EventHandler
from playground.handlers import default_handlers
from playground.meters import ComputeLoss
from playground.parts import Metric, Parts, RunInfo

log = logging.getLogger(__name__)
Data = Dataset | DataLoader | Sequence[torch.Tensor]


class EstimatorExperiment(AnyExp):
    """AnyExp applying the Estimator's losses to the network's outputs; batches are (inputs, label, ...)."""

    losses: list[Callable] = []

    def forward(self, inputs: Any, labels: tuple) -> dict:
        outputs = as_outputs(self.model(inputs), len(self.losses))
        return blobs_of(outputs, labels, [fn(output, label) for fn, output, label in zip(self.losses, outputs, labels)])

    def to_device(self, batch: Any, dataset: Any) -> tuple[Any, tuple]:
        inputs, *labels = batch
        labels = tuple(data.move(label, self.device) for label in labels)
        return data.to_device(inputs, self.device, dataset), labels

    def train_batches(self, epoch: int, start: int) -> Any:
        if isinstance(self.train_dataset, DataLoader):  # the user's own batching; resumes skip `start` batches
            return islice(iter(self.train_dataset), start, None)
        return super().train_batches(epoch, start)

    def test_batches(self) -> Any:
        if isinstance(self.test_dataset, DataLoader):
            return iter(self.test_dataset)
        return super().test_batches()


class Estimator:
    """Train, evaluate and predict with `net` through the playground loop.

    loss: a callable (output, label) -> scalar, or one per network output (default CrossEntropyLoss). A loss may
    return a dict of named, already weighted scalars ({"loss_cls": ..., "loss_box": ...}): their sum is
    optimised and each is recorded as a metric of its own (train_loss_cls, val_loss_cls).
    The network's outputs: a tuple holds one output per loss; anything else (a tensor, a dict, a list of
    per-sample results) is one output. Outputs and labels may be any structure of tensors (a dataset's
    `collate` batches labels that do not stack). In eval mode (val_data, evaluate, predict) the network may
    also decode its outputs (NMS, greedy decoding) for the metrics to read.
    metrics: "accuracy", "top5", playground meters (reset/update(blobs)/compute) or (name, meter) pairs; one
    list per output when the network has several. Meters read the blobs "output" and "label" (and "output{i}",
    "label{i}", "loss{i}" per output when there are several; a dotted name reads into a dict output:
    "output.detections"). val_metrics: metrics of the held-out data only (val_data, evaluate), such as those
    reading what the network decodes in eval mode. handlers: EventHandler instances (a ProgressBar
    is added unless one is given or progress_bar=False). optimizer: an Optimizer over net's parameters, or a
    callable params -> Optimizer (default SGD, lr 0.01). lr_scheduler: a callable optimizer -> LRScheduler,
    stepped every iteration. device: "cpu", "cuda", "cuda:1", ... (default: CUDA when available).
    """

    def __init__(self, net: torch.nn.Module, loss: Callable | Sequence[Callable] | None = None,
                 metrics: Sequence[Any] = (), handlers: Sequence[EventHandler] = (), optimizer: Any = None,
                 device: str | torch.device | None = None, lr_scheduler: Callable | None = None,
                 progress_bar: bool = True, val_metrics: Sequence[Any] = ()):
        if not isinstance(net, torch.nn.Module):
            raise EstimatorError(f"Estimator: net must be a torch.nn.Module, got {type(net).__name__}")
        self.net = net
        if loss is None:
            log.info("Estimator: no loss given; using torch.nn.CrossEntropyLoss()")
            loss = torch.nn.CrossEntropyLoss()
        self.losses = list(loss) if isinstance(loss, (list, tuple)) else [loss]
        if not self.losses or not all(callable(fn) for fn in self.losses):
            raise EstimatorError("Estimator: loss must be a callable (output, label) -> scalar, or a list of them")
        self.metrics, self.val_metrics, self.handlers = list(metrics), list(val_metrics), list(handlers)
        if bad := [h for h in self.handlers if not isinstance(h, EventHandler)]:
            raise EstimatorError(f"Estimator: handlers must be EventHandler instances, got {type(bad[0]).__name__}")
        # Each fit starts its handlers from this state (a resumed fit then loads theirs from the checkpoint).
        self._fresh_handler_states = [copy.deepcopy(h.state_dict()) for h in self.handlers]
        self.optimizer = self._optimizer(optimizer)
        self.lr_scheduler, self.progress_bar = lr_scheduler, progress_bar
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())  # the loop needs an index
        self.loss_names: list[str] = []              # the named losses the loss callables return (a dict)
        self.folder = ""                             # the last fit's run folder
        self.results: dict = {}                      # the last fit's results.json
        self.history: dict[str, dict[str, list]] = {}  # its metrics: name -> {"epochs", "iterations", "values"}

    def _optimizer(self, optimizer: Any) -> torch.optim.Optimizer:
        if optimizer is None:
            log.info("Estimator: no optimizer given; using torch.optim.SGD(lr=0.01)")
            optimizer = torch.optim.SGD(self.net.parameters(), lr=0.01)
        elif not isinstance(optimizer, torch.optim.Optimizer) and callable(optimizer):
            optimizer = optimizer(self.net.parameters())
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise EstimatorError(f"Estimator: optimizer must be a torch.optim.Optimizer or a callable params -> "
                                 f"Optimizer, got {type(optimizer).__name__}")
        own = {id(p) for p in self.net.parameters()}
        if not any(id(p) in own for group in optimizer.param_groups for p in group["params"]):
            raise EstimatorError("Estimator: the optimizer holds none of net's parameters; build it from "
                                 "net.parameters() (or pass a callable params -> Optimizer)")
        return optimizer

    # ------------------------------------------------------------------ the public API

    def fit(self, train_data: Data, val_data: Data | None = None, epochs: int = 1, checkpoint_folder: str = "",
            batch_size: int = 32, seed: int = 0, opts: dict[str, Any] | None = None) -> dict:
        """Train for `epochs` (testing on val_data after each) and return the results dict (results.json).

        Metrics are named as Keras names them: train_loss, train_<metric>, and on val_data val_loss, val_<metric>
        (which EarlyStopping and BestCheckpoint monitor by default).

        Data: a map-style Dataset of (inputs, label, ...) items, batched and shuffled by the framework from
        `seed` (exact resume); a DataLoader, used as it is; or a tuple (inputs, labels, ...) of tensors.
        checkpoint_folder: the run folder (empty: a new one under $PLAYGROUND_RUNS or ./runs); one holding an
        unfinished run resumes it. seed: seeds torch, numpy and random when training starts (as `playground run`
        does) and orders the data. opts: loop settings by their opts key (FIT_OPTS), e.g.
        {"output.checkpoint_every_iters": 50}.
        """
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise EstimatorError(f"Estimator.fit: epochs must be a positive integer, got {epochs!r}")
        train, val = dataset_of(train_data, "train_data"), dataset_of(val_data, "val_data")
        batch_size = train.batch_size if isinstance(train, DataLoader) and train.batch_size else batch_size
        settings = fit_settings(opts or {})
        self.net.to(self.device)
        self.check(train, batch_size, "train_data")
        if val is not None:
            self.check(val, batch_size, "val_data")
        iterations = len(train) if isinstance(train, DataLoader) else len(train) // batch_size
        if iterations < 1:
            raise EstimatorError(f"Estimator.fit: train_data has {len(train)} samples, fewer than one batch of "
                                 f"{batch_size}; lower batch_size")
        for handler, state in zip(self.handlers, self._fresh_handler_states):
            handler.load_state_dict(copy.deepcopy(state))
        record = self.describe(epochs, batch_size, seed, checkpoint_folder, settings)
        with lab.run_folder(record) as self.folder:  # the same record, folder and log file as `playground run`
            info = self._run_info(self.folder, epochs, iterations, batch_size, seed, val,
                                  {**settings, "opts": record})
            runner.seed_everything(seed)
            exp = self._experiment(info, train, val, default_handlers(settings.pop("progress_bar", self.progress_bar),
                                                                      [({}, h) for h in self.handlers]))
            distributed.restore(exp, runner.restore)
            with runner.stop_on_signals(exp):
                self.results = exp.run()
        self.history = self.results["metrics"]
        return self.results

    def evaluate(self, data_: Data, batch_size: int = 32) -> dict[str, float]:
        """The test metrics (test_loss, test_<metric>) of the network on `data_`, through the loop's test pass."""
        dataset = dataset_of(data_, "data")
        self.net.to(self.device)
        self.check(dataset, batch_size, "data")
        info = self._run_info("", 1, 1, batch_size, 0, dataset, {})
        exp = self._experiment(info, None, dataset, [], held_out="test")
        was_training = self.net.training
        try:
            exp.run_test()
        finally:
            self.net.train(was_training)
        return {k: v for k, v in exp.history["test"][-1].items() if k not in ("epoch", "iteration")}

    @torch.no_grad()
    def predict(self, data_: Data | torch.Tensor, batch_size: int = 32) -> Any:
        """The network's outputs (eval mode) for every sample of `data_` (inputs alone, or items whose first
        element is the input), in order, concatenated on the batch dimension (lists extended, dicts and tuples
        item by item); a tuple when the network has several outputs."""
        if isinstance(data_, torch.Tensor):
            data_ = (data_,)
        dataset = dataset_of(data_, "data")
        self.net.to(self.device)
        was_training = self.net.training
        self.net.eval()
        try:
            chunks = [as_outputs(self.net(data.to_device(inputs_of(batch), self.device, dataset)), len(self.losses))
                      for batch in iterate(dataset, batch_size)]
        finally:
            self.net.train(was_training)
        if not chunks:
            raise EstimatorError("Estimator.predict: data holds no samples")
        outputs = tuple(concat(parts) for parts in zip(*chunks))
        return outputs[0] if len(outputs) == 1 else outputs

    # ------------------------------------------------------------------ checks before the first step

    def check(self, dataset: Dataset | DataLoader, batch_size: int, what: str) -> None:
        """Run one batch through the network, losses and metrics (eval mode, no gradients, no RNG drawn) and
        raise EstimatorError naming the first mismatch."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            batch = next(iter(iterate(dataset, batch_size)), None)
            if batch is None:
                raise EstimatorError(f"Estimator: {what} holds no samples")
            want = 1 + len(self.losses)
            if not isinstance(batch, (tuple, list)) or len(batch) != want:
                got = f"{len(batch)} items" if isinstance(batch, (tuple, list)) else f"a {type(batch).__name__}"
                raise EstimatorError(f"Estimator: {what} yields {got} per batch, but {len(self.losses)} loss(es) "
                                     f"need {want}: (inputs, {', '.join(['label'] * len(self.losses))})")
            inputs, *labels = batch
            was_training = self.net.training
            self.net.eval()
            try:
                with torch.no_grad():
                    outputs = as_outputs(self.net(data.to_device(inputs, self.device, dataset)), len(self.losses))
                    if len(outputs) != len(self.losses):
                        raise EstimatorError(f"Estimator: the network returns {len(outputs)} output(s) but "
                                             f"{len(self.losses)} loss(es) were given; give one loss per output")
                    labels = [data.move(label, self.device) for label in labels]
                    losses = [self._check_output(i, out, label, fn, len(outputs))
                              for i, (out, label, fn) in enumerate(zip(outputs, labels, self.losses))]
                    self.loss_names = named_losses(losses)
                    self._check_metrics(outputs, labels, losses)
            finally:
                self.net.train(was_training)

    @staticmethod
    def _check_output(i: int, output: Any, label: Any, fn: Callable, count: int) -> torch.Tensor | dict:
        name = f"output {i}" if count > 1 else "the network's output"
        if isinstance(output, torch.Tensor) and isinstance(label, torch.Tensor):
            check_shapes(name, output, label)
        out_shape, label_shape = describe_shape(output), describe_shape(label)
        try:
            value = fn(output, label)
        except Exception as e:
            raise EstimatorError(f"Estimator: loss {i} fails on {name} {out_shape} and labels {label_shape}: "
                                 f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        for key, part in (value.items() if isinstance(value, dict) else [("", value)]):
            if not isinstance(part, torch.Tensor) or part.numel() != 1:
                shape = tuple(part.shape) if isinstance(part, torch.Tensor) else type(part).__name__
                what = f"loss {i}" + (f"'s {key!r}" if key else "")
                raise EstimatorError(f"Estimator: {what} returns {shape}, not a scalar; reduce it (reduction='mean')")
        if isinstance(value, dict) and not value:
            raise EstimatorError(f"Estimator: loss {i} returns an empty dict; return at least one named loss")
        return value

    def _check_metrics(self, outputs: tuple, labels: list, losses: list) -> None:
        blobs = blobs_of(outputs, labels, losses)
        for name, meter in self._metrics(held_out=True):
            meter = copy.deepcopy(meter)
            try:
                meter.reset()
                meter.update(blobs)
                meter.compute()
            except KeyError as e:
                raise EstimatorError(f"Estimator: metric {name!r} reads the blob {e.args[0]!r}, which does not "
                                     f"exist; blobs: {', '.join(blobs)}") from None
            except Exception as e:
                raise EstimatorError(f"Estimator: metric {name!r} fails on the first batch: {type(e).__name__}: "
                                     f"{str(e).splitlines()[0] if str(e) else ''}") from None

    # ------------------------------------------------------------------ opts and components for the loop

    def describe(self, epochs: int, batch_size: int, seed: int, folder: str, settings: dict) -> dict:
        """What the lab book records as this fit's opts: its arguments and the classes it was given."""
        names = lambda items: [getattr(i, "__name__", type(i).__name__) for i in items]  # noqa: E731
        return {"estimator": {"network": type(self.net).__name__, "losses": names(self.losses),
                              "optimizer": type(self.optimizer).__name__,
                              "metrics": [n for n, _ in self._all_meters(held_out=True)],
                              "handlers": names(self.handlers), "epochs": epochs, "batch_size": batch_size,
                              "seed": seed, "device": str(self.device), **settings},
                "output": {"checkpoint_folder": folder, "runs_root": settings.get("runs_root", "")}}

    def _run_info(self, folder: str, epochs: int, iterations: int, batch_size: int, seed: int, val: Any,
                  settings: dict) -> RunInfo:
        loss_plot = [f"{kind}_loss" for kind in ("train", "val") if kind == "train" or val is not None]
        fields = {k: v for k, v in settings.items() if k in RunInfo.__dataclass_fields__}
        return RunInfo(device=self.device, folder=folder, num_epochs=epochs, epoch_iterations=iterations,
                       batch_per_device=batch_size, total_batch_size=batch_size, seed=seed,
                       num_test_sample=len(val) if isinstance(val, Dataset) else 0,
                       plots=({"x": "", "x_title": "iterations", "ys": loss_plot, "y_title": "loss"},), **fields)

    def _experiment(self, info: RunInfo, train: Any, val: Any, handlers: list,
                    held_out: str = "val") -> EstimatorExperiment:
        """The loop over the user's own objects: no opts, no components. `held_out` names the metrics of `val`."""
        metrics = [Metric(f"{kind}_{name}", copy.deepcopy(meter), kind == "train")
                   for kind in ("train", held_out) for name, meter in self._all_meters(held_out=kind != "train")
                   if kind == "train" or val is not None]
        parts = Parts(network=self.net, optimizer=self.optimizer, train_data=train, test_data=val,
                      lr_scheduler=self.lr_scheduler(self.optimizer) if self.lr_scheduler and train else None,
                      metrics=metrics, handlers=[h() if isinstance(h, type) else h for _, h in handlers])
        exp = EstimatorExperiment(parts, info)
        exp.losses = self.losses
        return exp

    def _all_meters(self, held_out: bool = False) -> list[tuple[str, Any]]:
        """(name, meter) of the losses, then of the metrics (with val_metrics on held-out data)."""
        meters = [("loss", ComputeLoss("loss"))]
        meters += [(name, ComputeLoss(name)) for name in self.loss_names]
        if len(self.losses) > 1:
            meters += [(f"loss{i}", ComputeLoss(f"loss{i}")) for i in range(len(self.losses))]
        return meters + self._metrics(held_out)

    def _metrics(self, held_out: bool) -> list[tuple[str, Any]]:
        named = metric_meters(self.metrics, len(self.losses))
        if held_out and self.val_metrics:
            named += metric_meters(self.val_metrics, len(self.losses))
        names = [name for name, _ in named]
        if clash := sorted({n for n in names if names.count(n) > 1} | (set(names) & set(self.loss_names))):
            raise EstimatorError(f"Estimator: metric names repeat or clash with the named losses: {clash}; name "
                                 "them with (name, meter) pairs")
        return named


FIT_OPTS = {  # opts key -> RunInfo field (or the lab's), the loop settings Estimator.fit takes by opts key
    "output.record_every_iters": "record_every", "output.checkpoint_every_iters": "checkpoint_every",
    "output.keep_checkpoints": "keep_checkpoints", "output.tensorboard": "tensorboard",
    "output.progress_bar": "progress_bar", "output.runs_root": "runs_root", "input.decode_threads": "workers",
    "model_param.mixed_precision": "mixed_precision", "model_param.channels_last": "channels_last",
    "model_param.compile": "compile",
}


def fit_settings(given: dict[str, Any]) -> dict[str, Any]:
    """Estimator.fit's `opts`, checked against the same declarations as the opts' keys, as RunInfo fields."""
    if unknown := sorted(set(given) - set(FIT_OPTS)):
        raise EstimatorError(f"Estimator.fit: opts {', '.join(unknown)} are not loop settings; it takes "
                             f"{', '.join(FIT_OPTS)}")
    if problems := opts_lib.value_problems(given):
        raise OptsError([f"Estimator: {p}" for p in problems])
    return {FIT_OPTS[key]: value for key, value in given.items()}
