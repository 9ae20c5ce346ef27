"""AnyExp: the loop. It decides *when* things happen; components named in the opts decide *what* happens.

    run()
      train_begin
      for epoch in list_of_epochs():
          epoch_begin
          for iteration in list_of_epoch_iters():
              iteration_begin, train_step, [record train metrics], iteration_end
              [test_begin, run_test, test_end]  every num_train_iteration_per_test and at the epoch's end
              [checkpoint]                      every checkpoint_every_iters, when a handler requests one,
                                                or when asked to stop
          epoch_end, checkpoint
      train_end, results.json, plots

Subclasses (the model component's `Experiment`) define `forward`; any method can be replaced through
`additional_override_py`, which builds a subclass and leaves this class untouched.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from playground import checkpoint, data, distributed, plots
from playground.errors import PlaygroundError, UsageError
from playground.events import Event, HandlerError
from playground.state import ExperimentState

log = logging.getLogger(__name__)


class Stopped(PlaygroundError):
    """The run stopped on a signal after writing a checkpoint; re-running the command resumes it."""

    exit_code = 143


class AnyExp:
    """An experiment built from resolved components (`playground.runner.Components`) and run facts."""

    def __init__(self, opts: dict, components: Any, run: Any):
        self.opts, self.components = opts, components
        self.seed, self.device, self.folder = opts["model_param"]["seed"], run.device, run.folder
        self.rank, self.world_size = run.rank, run.world_size
        self.total_batch_size, self.epoch_iterations = run.total_batch_size, run.epoch_iterations
        self.state = ExperimentState()
        self.history: dict[str, list[dict]] = {"train": [], "test": []}  # recorded rows: x, iteration, metrics
        self.latest: dict[str, float] = {}
        self.checkpoints: list[str] = []
        self.blobs: dict = {}
        self.handlers = [cls(**entry["kargs"]) for entry, cls in components.handlers]
        self.checkpoint_requested = False  # set by request_checkpoint, cleared by save_checkpoint
        self.stop_requested = ""  # set by request_stop; distributed.agree_stop makes it state.stop_reason
        self._train_secs, self._train_iters = 0.0, 0

    # ------------------------------------------------------------------ building (each one replaceable)

    def build(self) -> None:
        """Build the network, optimizer, datasets and meters from the components, on `self.device`."""
        param = self.opts["model_param"]
        self.network = self.components.forward_pass.build_network(self).to(self.device)
        if param["combine_spatial_bn"] and self.world_size > 1:
            self.network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.network)
        if param["channels_last"]:
            self.network = self.network.to(memory_format=torch.channels_last)
        self.model = distributed.wrap(self.network, self)
        if param["compile"]:
            self.model = torch.compile(self.model)
        update = self.components.parameter_update
        self.optimizer = update.build_optimizer(self, self.network)
        build_scheduler = getattr(update, "build_lr_scheduler", None)
        self.lr_scheduler = build_scheduler(self, self.optimizer) if build_scheduler else None
        self.autocast_dtype = {"": None, "bf16": torch.bfloat16, "fp16": torch.float16}[param["mixed_precision"]]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast_dtype == torch.float16)
        self.train_dataset = self.build_dataset("train")
        self.test_dataset = self.build_dataset("test")
        self.meters = {m["name"]: (m["is_train"], cls(**m["meter_kargs"])) for m, cls in self.components.meters}

    def build_dataset(self, split: str) -> Any:
        return self.components.input.get_dataset(self, split)

    # ------------------------------------------------------------------ the loop

    def list_of_epochs(self) -> Iterable[int]:
        """Epochs still to run. Override to stop by loss, accuracy or time instead of a fixed count."""
        return range(self.state.epoch, self.opts["epoch_iter"]["num_epochs"])

    def list_of_epoch_iters(self) -> Iterable[int]:
        """Iterations still to run in the current epoch, consecutive from `state.iteration`."""
        return range(self.state.iteration, self.epoch_iterations)

    def run(self) -> dict:
        """Train, test and checkpoint to the end (or a requested stop); return the results dict."""
        self.fire(Event.TRAIN_BEGIN)
        for epoch in self.list_of_epochs():
            self.run_epoch(epoch)
            if self.state.stop_reason:
                break
        self.fire(Event.TRAIN_END)
        return self.conclude()

    def run_epoch(self, epoch: int) -> None:
        if epoch != self.state.epoch:
            self.state.epoch, self.state.iteration = epoch, 0
        self.fire(Event.EPOCH_BEGIN)
        train_batches = self.train_batches(epoch, self.state.iteration)
        self.network.train()
        for iteration in self.list_of_epoch_iters():
            self.run_iteration(iteration, next(train_batches))
            if self.state.stop_reason:
                self.save_checkpoint()
                return
        self.state.epoch, self.state.iteration = epoch + 1, 0
        self.fire(Event.EPOCH_END)
        distributed.agree_stop(self, now=True)
        self.save_checkpoint()

    def run_iteration(self, iteration: int, batch: Any) -> None:
        self.state.iteration = iteration
        self.fire(Event.ITERATION_BEGIN)
        started = time.perf_counter()
        self.blobs = self.train_step(batch)
        self._train_secs += time.perf_counter() - started
        self._train_iters += 1
        self.state.iteration, self.state.global_step = iteration + 1, self.state.global_step + 1
        end_of_epoch = self.state.iteration == self.epoch_iterations
        if end_of_epoch or self.state.global_step % self.opts["output"]["record_every_iters"] == 0:
            self.record_train()
        self.fire(Event.ITERATION_END)
        per_test = self.opts["epoch_iter"]["num_train_iteration_per_test"]
        if end_of_epoch or (per_test and self.state.iteration % per_test == 0):
            self.run_test()
        distributed.agree_stop(self)  # every rank stops at the same iteration, whichever rank was asked
        if self.checkpoint_due() and not end_of_epoch and not self.state.stop_reason:  # run_epoch saves those
            self.save_checkpoint()

    def checkpoint_due(self) -> bool:
        """Whether this iteration boundary writes a checkpoint: one was requested or checkpoint_every_iters says
        so (epoch ends and stops always write one)."""
        every = self.opts["output"]["checkpoint_every_iters"]
        return bool(self.checkpoint_requested or every and self.state.global_step % every == 0)

    def train_step(self, batch: Any) -> dict:
        """One optimizer step on `batch`; returns the blobs of `forward`."""
        inputs, labels = self.to_device(batch, self.train_dataset)
        with self.autocast():
            blobs = self.forward(inputs, labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(blobs["loss"]).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        blobs.setdefault("batch_size", len(labels))  # forward may set it (labels that are not one tensor)
        blobs["learning_rate"] = self.optimizer.param_groups[0]["lr"]  # the rate this step used
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        return blobs

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict:
        """Blobs of one batch, with at least a scalar 'loss'. The model component's Experiment defines it."""
        raise NotImplementedError(f"{type(self).__name__} must define forward(inputs, labels)")

    @torch.no_grad()
    def run_test(self) -> None:
        """Accumulate every test meter over num_test_iter batches of the test set, then record them."""
        if self.test_dataset is None:
            return
        self.network.eval()
        self.fire(Event.TEST_BEGIN)
        test_meters = {name: meter for name, (is_train, meter) in self.meters.items() if not is_train}
        for meter in test_meters.values():
            meter.reset()
        for batch in self.test_batches():
            inputs, labels = self.to_device(batch, self.test_dataset)
            with self.autocast():
                blobs = self.forward(inputs, labels)
            blobs.setdefault("batch_size", len(labels))
            self.update_meters(test_meters, blobs)
        self.state.test_passes += 1
        self.record("test", distributed.compute_all(test_meters, self))
        self.network.train()
        self.fire(Event.TEST_END)
        self.log_progress()

    # ------------------------------------------------------------------ pieces of the loop

    @property
    def workers(self) -> int:
        return self.opts["input"]["decode_threads"]

    def train_batches(self, epoch: int, start: int) -> Any:
        if hasattr(self.train_dataset, "set_epoch"):
            self.train_dataset.set_epoch(epoch)
        order = data.epoch_order(len(self.train_dataset), self.epoch_iterations * self.total_batch_size,
                                 self.seed, epoch)
        indices = data.train_batch_indices(order, self.total_batch_size, self.rank,
                                           self.opts["epoch_iter"]["batch_per_device"], start, self.epoch_iterations)
        return data.batches(self.train_dataset, indices, self.workers, self.seed + epoch, self.device.type == "cuda")

    def test_batches(self) -> Iterator:
        """This process's batches of one test pass: its slices of the first num_test_iter global batches."""
        epoch_iter, per_rank = self.opts["epoch_iter"], self.opts["epoch_iter"]["batch_per_device"]
        num_samples = min(epoch_iter["num_test_sample"], len(self.test_dataset))
        indices = data.test_batch_indices(num_samples, self.total_batch_size, self.rank, per_rank,
                                          epoch_iter["num_test_iter"])
        return data.batches(self.test_dataset, [i for i in indices if i], self.workers, self.seed,
                            self.device.type == "cuda")

    def to_device(self, batch: Any, dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """`batch` of `dataset` as the network takes it, on this process's device."""
        inputs, labels = batch
        inputs = data.to_device(inputs, self.device, dataset)
        if self.opts["model_param"]["channels_last"] and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return inputs, labels.to(self.device, non_blocking=True)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def record_train(self) -> None:
        """Train meters on this iteration's blobs, throughput since the last record, and the learning rate."""
        train_meters = {name: meter for name, (is_train, meter) in self.meters.items() if is_train}
        for meter in train_meters.values():
            meter.reset()
        self.update_meters(train_meters, self.blobs)
        values = distributed.compute_all(train_meters, self)  # one reduction for all of them
        secs = self._train_secs / max(self._train_iters, 1)
        values.update(secs_per_train=secs, samples_per_sec=self.total_batch_size / secs if secs else 0.0,
                      learning_rate=self.blobs["learning_rate"])
        self._train_secs, self._train_iters = 0.0, 0
        self.record("train", values)

    def update_meters(self, meters: dict[str, Any], blobs: dict) -> None:
        """Each meter's update on `blobs`; a metric reading a blob that forward does not return is an opts error."""
        for name, meter in meters.items():
            try:
                meter.update(blobs)
            except KeyError as e:
                raise UsageError(f"output.metrics: {name!r} reads the blob {e.args[0]!r}, which "
                                 f"{type(self).__name__}.forward does not return; it returns "
                                 f"{', '.join(map(str, blobs))}") from None

    def record(self, kind: str, values: dict[str, float]) -> None:
        """Append one row of `kind` ('train' or 'test') metrics at the current fractional epoch."""
        x = self.state.epoch + self.state.iteration / self.epoch_iterations
        row = {"epoch": x, "iteration": self.state.global_step, **values}
        self.history[kind].append(row)
        self.latest.update(values)

    def log_progress(self) -> None:
        row = {**(self.history["train"][-1] if self.history["train"] else {}), **self.history["test"][-1]}
        shown = " ".join(f"{k}={v:.4g}" for k, v in row.items() if k not in ("epoch", "iteration"))
        log.info("epoch %.2f iteration %d: %s", row["epoch"], row["iteration"], shown)

    def request_stop(self, reason: str) -> None:
        """Stop at the next iteration boundary, after a checkpoint (handlers and signals call this). With several
        processes every rank stops together, within about 0.1 s of training (see distributed.agree_stop)."""
        self.stop_requested = self.stop_requested or reason

    def request_checkpoint(self) -> None:
        """Write a checkpoint at the next iteration boundary (handlers call this; epoch ends always write one)."""
        self.checkpoint_requested = True

    def fire(self, event: Event, **kwargs: Any) -> None:
        """Call this experiment's hook `on_<event>`, then every handler's."""
        getattr(self, f"on_{event.value}")(**kwargs)
        for handler in self.handlers:
            try:
                getattr(handler, f"on_{event.value}")(self, **kwargs)
            except PlaygroundError:
                raise
            except Exception as e:
                raise HandlerError(f"{type(handler).__name__}.on_{event.value} failed at epoch {self.state.epoch} "
                                   f"iteration {self.state.iteration}: {type(e).__name__}: {e}") from e

    # Hooks: the same events handlers see, for subclasses and override modules. No-ops here.
    def on_train_begin(self) -> None: ...
    def on_epoch_begin(self) -> None: ...
    def on_iteration_begin(self) -> None: ...
    def on_iteration_end(self) -> None: ...
    def on_test_begin(self) -> None: ...
    def on_test_end(self) -> None: ...
    def on_epoch_end(self) -> None: ...
    def on_checkpoint_saved(self, path: str) -> None: ...
    def on_train_end(self) -> None: ...

    # ------------------------------------------------------------------ checkpoints and results

    def checkpoint_state(self) -> dict:
        """Everything needed to continue exactly from here, as plain data."""
        return {"format_version": checkpoint.FORMAT_VERSION, "model": self.network.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "lr_scheduler": self.lr_scheduler.state_dict() if self.lr_scheduler else None,
                "grad_scaler": self.scaler.state_dict(), "state": self.state.state_dict(),
                "history": self.history, "checkpoints": self.checkpoints, "rng": checkpoint.rng_states(),
                "handlers": [{"name": type(h).__name__, "state": h.state_dict()} for h in self.handlers],
                "opts": self.opts}

    def load_checkpoint_state(self, saved: dict, weights_only: bool = False) -> None:
        """Restore a `checkpoint_state`; with weights_only, only the network's parameters and buffers."""
        self.network.load_state_dict(saved["model"])
        if weights_only:
            return
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.lr_scheduler is not None and saved["lr_scheduler"] is not None:
            self.lr_scheduler.load_state_dict(saved["lr_scheduler"])
        self.scaler.load_state_dict(saved["grad_scaler"])
        self.state.load_state_dict(saved["state"])
        self.history, self.checkpoints = saved["history"], saved["checkpoints"]
        self.latest = {k: v for rows in self.history.values() for row in rows for k, v in row.items()
                       if k not in ("epoch", "iteration")}
        saved_handlers = saved["handlers"]
        if [h["name"] for h in saved_handlers] != [type(h).__name__ for h in self.handlers]:
            log.warning("the handlers differ from the checkpoint's (%s); their saved state is not restored",
                        ", ".join(h["name"] for h in saved_handlers))
        else:
            for handler, entry in zip(self.handlers, saved_handlers):
                handler.load_state_dict(entry["state"])
        checkpoint.set_rng_states(saved["rng"])  # last: nothing may draw between restoring and training

    def save_checkpoint(self, final: bool = False) -> str | None:
        """Write a checkpoint named by the checkpoint-path component (rank 0 only); return its path."""
        self.checkpoint_requested = False
        if self.rank != 0:
            return None
        name = self.components.checkpoint_path.checkpoint_name(self, self.state.epoch, self.state.iteration, final)
        path = os.path.join(self.folder, name)
        if path not in self.checkpoints:  # before saving, so the checkpoint lists itself and a resumed run too
            self.checkpoints.append(path)
        checkpoint.save(path, {**self.checkpoint_state(), "complete": final})
        log.info("checkpoint %s (epoch %d, iteration %d)", path, self.state.epoch, self.state.iteration)
        self.fire(Event.CHECKPOINT_SAVED, path=path)
        return path

    def conclude(self) -> dict:
        """Final checkpoint, results.json and plots; raise Stopped if a signal ended the run early."""
        if self.state.stop_reason.startswith("signal"):
            raise Stopped(f"stopped by {self.state.stop_reason[7:]} at epoch {self.state.epoch} iteration "
                          f"{self.state.iteration}; checkpoint in {self.folder}: re-run the same command to resume")
        if self.state.stop_reason:
            log.info("stopped early: %s", self.state.stop_reason)
        self.save_checkpoint(final=True)
        results = self.components.output.gen_output(self)
        if self.rank == 0:
            checkpoint.atomic_write(os.path.join(self.folder, "results.json"),
                                    json.dumps(results, indent=1).encode())
            plots.write(self.history, self.opts["output"]["plots"], self.folder)
        return results
