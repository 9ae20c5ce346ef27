"""Estimator: fit / evaluate / predict for a network built in Python, run by the same AnyExp loop as the opts.

`Estimator.fit` hands the loop the user's own objects as its parts (network, losses, optimizer, data, meters,
handlers) and runs it as `playground run` does: the same loop, handlers, checkpoints, resume and run folder. Mistakes the Gluon Fit API design lists (network outputs vs
losses vs metrics, label vs output shapes, data yielding the wrong number of items) are found on one batch
before the first step and raised as EstimatorError.
"""
from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from playground import data, distributed, lab, opts as opts_lib, runner
from playground.anyexp import AnyExp
from playground.errors import EstimatorError, OptsError
from playground.events import EventHandler
from playground.handlers import default_handlers
from playground.meters import ComputeLoss, ComputeTopKAccuracy
from playground.parts import Metric, Parts, RunInfo

log = logging.getLogger(__name__)
Data = Dataset | DataLoader | Sequence[torch.Tensor]


class EstimatorExperiment(AnyExp):
    """AnyExp applying the Estimator's losses to the network's outputs; batches are (inputs, label, ...)."""

    losses: list[Callable] = []

    def forward(self, inputs: Any, labels: tuple) -> dict:
        outputs = _as_outputs(self.model(inputs))
        return _blobs(outputs, labels, [fn(output, label) for fn, output, label in zip(self.losses, outputs, labels)])

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

    loss: a callable (output, label) -> scalar, or one per network output (default CrossEntropyLoss).
    metrics: "accuracy", "top5", playground meters (reset/update(blobs)/compute) or (name, meter) pairs; one
    list per output when the network has several. Meters read the blobs "output" and "label" (and "output{i}",
    "label{i}", "loss{i}" per output when there are several). handlers: EventHandler instances (a ProgressBar
    is added unless one is given or progress_bar=False). optimizer: an Optimizer over net's parameters, or a
    callable params -> Optimizer (default SGD, lr 0.01). lr_scheduler: a callable optimizer -> LRScheduler,
    stepped every iteration. device: "cpu", "cuda", "cuda:1", ... (default: CUDA when available).
    """

    def __init__(self, net: torch.nn.Module, loss: Callable | Sequence[Callable] | None = None,
                 metrics: Sequence[Any] = (), handlers: Sequence[EventHandler] = (), optimizer: Any = None,
                 device: str | torch.device | None = None, lr_scheduler: Callable | None = None,
                 progress_bar: bool = True):
        if not isinstance(net, torch.nn.Module):
            raise EstimatorError(f"Estimator: net must be a torch.nn.Module, got {type(net).__name__}")
        self.net = net
        if loss is None:
            log.info("Estimator: no loss given; using torch.nn.CrossEntropyLoss()")
            loss = torch.nn.CrossEntropyLoss()
        self.losses = list(loss) if isinstance(loss, (list, tuple)) else [loss]
        if not self.losses or not all(callable(fn) for fn in self.losses):
            raise EstimatorError("Estimator: loss must be a callable (output, label) -> scalar, or a list of them")
        self.metrics, self.handlers = list(metrics), list(handlers)
        if bad := [h for h in self.handlers if not isinstance(h, EventHandler)]:
            raise EstimatorError(f"Estimator: handlers must be EventHandler instances, got {type(bad[0]).__name__}")
        # Each fit starts its handlers from this state (a resumed fit then loads theirs from the checkpoint).
        self._fresh_handler_states = [copy.deepcopy(h.state_dict()) for h in self.handlers]
        self.optimizer = self._optimizer(optimizer)
        self.lr_scheduler, self.progress_bar = lr_scheduler, progress_bar
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())  # the loop needs an index
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
        train, val = _dataset(train_data, "train_data"), _dataset(val_data, "val_data")
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
        dataset = _dataset(data_, "data")
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
    def predict(self, data_: Data | torch.Tensor, batch_size: int = 32) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The network's outputs for every sample of `data_` (inputs alone, or items whose first element is the
        input), in order, concatenated on the batch dimension; a tuple when the network has several outputs."""
        if isinstance(data_, torch.Tensor):
            data_ = (data_,)
        dataset = _dataset(data_, "data")
        self.net.to(self.device)
        was_training = self.net.training
        self.net.eval()
        try:
            chunks = [_as_outputs(self.net(data.to_device(_inputs(batch), self.device, dataset)))
                      for batch in _iterate(dataset, batch_size)]
        finally:
            self.net.train(was_training)
        if not chunks:
            raise EstimatorError("Estimator.predict: data holds no samples")
        outputs = tuple(torch.cat(parts) for parts in zip(*chunks))
        return outputs[0] if len(outputs) == 1 else outputs

    # ------------------------------------------------------------------ checks before the first step

    def check(self, dataset: Dataset | DataLoader, batch_size: int, what: str) -> None:
        """Run one batch through the network, losses and metrics (eval mode, no gradients, no RNG drawn) and
        raise EstimatorError naming the first mismatch."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            batch = next(iter(_iterate(dataset, batch_size)), None)
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
                    outputs = _as_outputs(self.net(data.to_device(inputs, self.device, dataset)))
                    if len(outputs) != len(self.losses):
                        raise EstimatorError(f"Estimator: the network returns {len(outputs)} output(s) but "
                                             f"{len(self.losses)} loss(es) were given; give one loss per output")
                    labels = [data.move(label, self.device) for label in labels]
                    losses = [self._check_output(i, out, label, fn, len(outputs))
                              for i, (out, label, fn) in enumerate(zip(outputs, labels, self.losses))]
                    self._check_metrics(outputs, labels, losses)
            finally:
                self.net.train(was_training)

    @staticmethod
    def _check_output(i: int, output: Any, label: Any, fn: Callable, count: int) -> torch.Tensor:
        name = f"output {i}" if count > 1 else "the network's output"
        if not isinstance(output, torch.Tensor) or not isinstance(label, torch.Tensor):
            raise EstimatorError(f"Estimator: {name} and its label must be tensors, got {type(output).__name__} "
                                 f"and {type(label).__name__}")
        out_shape, label_shape = tuple(output.shape), tuple(label.shape)
        if not out_shape or not label_shape or out_shape[0] != label_shape[0]:
            raise EstimatorError(f"Estimator: labels of shape {label_shape} do not match {name} of shape "
                                 f"{out_shape}: they must hold the same number of samples (first dimension)")
        if label.is_floating_point() and label_shape != out_shape:
            hint = " (the loss would broadcast them)" if label.numel() == output.numel() else \
                " (class indices must be an integer tensor)" if len(label_shape) == len(out_shape) - 1 else ""
            raise EstimatorError(f"Estimator: float labels of shape {label_shape} do not match {name} of shape "
                                 f"{out_shape}{hint}")
        expected = (out_shape[0], *out_shape[2:])
        if not label.is_floating_point() and label_shape not in (expected, out_shape):
            raise EstimatorError(f"Estimator: class-index labels of shape {label_shape} do not fit {name} of shape "
                                 f"{out_shape}; expected {expected}")
        try:
            value = fn(output, label)
        except Exception as e:
            raise EstimatorError(f"Estimator: loss {i} fails on {name} {out_shape} and labels {label_shape}: "
                                 f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise EstimatorError(f"Estimator: loss {i} returns {shape}, not a scalar; reduce it (reduction='mean')")
        return value

    def _check_metrics(self, outputs: tuple, labels: list, losses: list) -> None:
        blobs = _blobs(outputs, labels, losses)
        for name, meter in _metric_meters(self.metrics, len(outputs)):
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
                              "optimizer": type(self.optimizer).__name__, "metrics": [n for n, _ in self._all_meters()],
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
                   for kind in ("train", held_out) for name, meter in self._all_meters()
                   if kind == "train" or val is not None]
        parts = Parts(network=self.net, optimizer=self.optimizer, train_data=train, test_data=val,
                      lr_scheduler=self.lr_scheduler(self.optimizer) if self.lr_scheduler and train else None,
                      metrics=metrics, handlers=[h() if isinstance(h, type) else h for _, h in handlers])
        exp = EstimatorExperiment(parts, info)
        exp.losses = self.losses
        return exp

    def _all_meters(self) -> list[tuple[str, Any]]:
        meters = [("loss", ComputeLoss("loss"))]
        if len(self.losses) > 1:
            meters += [(f"loss{i}", ComputeLoss(f"loss{i}")) for i in range(len(self.losses))]
        return meters + _metric_meters(self.metrics, len(self.losses))


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


# ---------------------------------------------------------------------------------------------- helpers


def _metric_meters(metrics: Sequence[Any], outputs: int) -> list[tuple[str, Any]]:
    """(name, meter) for every metric spec; one list of specs per output when there are several outputs."""
    groups = list(metrics)
    if outputs > 1 or (groups and all(isinstance(g, list) for g in groups)):
        if groups and (len(groups) != outputs or not all(isinstance(g, list) for g in groups)):
            raise EstimatorError(f"Estimator: the network returns {outputs} output(s) but metrics has "
                                 f"{len(groups)} entr{'y' if len(groups) == 1 else 'ies'}; give one list of "
                                 f"metrics per output, e.g. metrics=[{', '.join(['[...]'] * outputs)}]")
    else:
        groups = [groups]
    named: list[tuple[str, Any]] = []
    for i, group in enumerate(groups):
        suffix = str(i) if outputs > 1 else ""
        blobs = [f"output{suffix}", f"label{suffix}"]
        for spec in group:
            name, meter = _metric(spec, blobs)
            named.append((name + suffix, meter))
    names = [name for name, _ in named]
    if repeated := sorted({n for n in names if names.count(n) > 1 or re.fullmatch(r"loss\d*", n)}):
        raise EstimatorError(f"Estimator: metric names repeat or clash with the loss: {repeated}; name them with "
                             "(name, meter) pairs")
    return named


def _metric(spec: Any, blobs: list[str]) -> tuple[str, Any]:
    if isinstance(spec, str):
        if spec == "accuracy" or re.fullmatch(r"top\d+", spec):
            return spec, ComputeTopKAccuracy(blobs, topk=1 if spec == "accuracy" else int(spec[3:]))
        raise EstimatorError(f"Estimator: unknown metric {spec!r}; use \"accuracy\", \"top5\" (any k), a meter or "
                             "a (name, meter) pair")
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
        name, meter = spec
    else:
        meter = spec
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(meter).__name__).lower().removeprefix("compute_")
    if not all(callable(getattr(meter, m, None)) for m in ("reset", "update", "compute")):
        raise EstimatorError(f"Estimator: metric {name!r} ({type(meter).__name__}) is not a meter: it needs reset(), "
                             "update(blobs) and compute()")
    return name, meter


def _blobs(outputs: tuple, labels: Sequence, losses: list) -> dict:
    """What meters read: the summed loss, the first output and label, and each one numbered when several."""
    blobs = {"loss": losses[0] if len(losses) == 1 else sum(losses), "batch_size": len(labels[0]),
             "output": outputs[0], "label": labels[0]}
    if len(outputs) > 1:
        for i, (output, label, value) in enumerate(zip(outputs, labels, losses)):
            blobs.update({f"output{i}": output, f"label{i}": label, f"loss{i}": value})
    return blobs


def _dataset(value: Any, what: str) -> Any:
    if value is None or isinstance(value, (Dataset, DataLoader)):
        return value
    if isinstance(value, (tuple, list)) and value and all(isinstance(t, torch.Tensor) for t in value):
        if len({len(t) for t in value}) != 1:
            raise EstimatorError(f"Estimator: the tensors of {what} hold different numbers of samples: "
                                 f"{[len(t) for t in value]}")
        return data.TensorData(*value)
    raise EstimatorError(f"Estimator: {what} must be a torch Dataset, a DataLoader or a tuple of tensors, got "
                         f"{type(value).__name__}")


def _iterate(dataset: Dataset | DataLoader, batch_size: int) -> Any:
    """Batches in order: a DataLoader's own, or consecutive slices of a Dataset."""
    if isinstance(dataset, DataLoader):
        return iter(dataset)
    return (data.fetch(dataset, list(range(i, min(i + batch_size, len(dataset)))))
            for i in range(0, len(dataset), batch_size))


def _inputs(batch: Any) -> Any:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def _as_outputs(value: Any) -> tuple:
    if isinstance(value, torch.Tensor):
        return (value,)
    if isinstance(value, (tuple, list)) and value:
        return tuple(value)
    raise EstimatorError(f"Estimator: the network returns a {type(value).__name__}; it must return a tensor or a "
                         "tuple of tensors (one per loss)")
