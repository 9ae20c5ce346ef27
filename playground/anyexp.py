"""AnyExp: the loop. It decides *when* things happen; the parts it is given decide *what* happens.

    run()
      train_begin
      for epoch in list_of_epochs():
          epoch_begin
          for iteration in list_of_epoch_iters():
              iteration_begin, train_step (accumulate_grad_batches batches, one optimizer step),
              [record train metrics], iteration_end
              [test_begin, run_test, test_end]  every iterations_per_test and at the epoch's end
              [checkpoint]                      every checkpoint_every, when a handler requests one,
                                                or when asked to stop
          epoch_end, checkpoint
      train_end, final checkpoint, results.json, plots

Subclasses (the model component's `Experiment`) define `forward`; any method can be replaced through
`additional_override_py`, which builds a subclass and leaves this class untouched.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch

from playground import checkpoint, data, distributed, plots
from playground.errors import HandlerError, PlaygroundError, Stopped, UsageError
from playground.events import Event, EventHandler, calls_by_event
from playground.parts import Parts, RunInfo
from playground.state import ExperimentState, StopRequest

log = logging.getLogger(__name__)
AUTOCAST = {"": None, "bf16": torch.bfloat16, "fp16": torch.float16}
NO_CONTEXT = contextlib.nullcontext()  # reusable: it keeps no state


class AnyExp:
    """An experiment: built parts, the run's facts, and the state the loop changes."""

    def __init__(self, parts: Parts, info: RunInfo):
        from playground.builtins import gen_checkpoint_path, output_generator

        self.parts, self.info, self.opts = parts, info, info.opts
        self.opts_sha256 = checkpoint.opts_digest(self.opts)  # once, not at every checkpoint
        self.seed, self.device, self.folder = info.seed, info.device, info.folder
        self.rank, self.world_size = info.rank, info.world_size
        self.total_batch_size, self.epoch_iterations = info.total_batch_size, info.epoch_iterations
        self.state = ExperimentState()
        self.step_blobs: list[dict] = []  # the outputs of each batch of the latest training iteration
        self.blobs: dict = {}            # those of its last batch
        self.row: dict | None = None     # the row recorded at the current event, if any (see add_to_row)
        self.network = parts.network.to(self.device)
        self.moves_batches = self.device.type != "cpu"  # datasets make batches on the CPU: there, they stay put
        if info.sync_batchnorm and self.world_size > 1:
            self.network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.network)
        if info.channels_last:
            self.network = self.network.to(memory_format=torch.channels_last)
        wrapped = distributed.wrap(self.network, self)
        # Under DDP, batches before the last of a step skip the gradient all-reduce (DDP sums locally meanwhile).
        self.no_sync = wrapped.no_sync if wrapped is not self.network else contextlib.nullcontext
        self.model = torch.compile(wrapped) if info.compile else wrapped  # what the training step calls
        self.optimizer, self.lr_scheduler = parts.optimizer, parts.lr_scheduler
        self.autocast_dtype = AUTOCAST[info.mixed_precision]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast_dtype == torch.float16)
        self.scales_loss = self.scaler.is_enabled()  # fp16 only; a disabled scaler would only pass calls on
        self.train_dataset, self.test_dataset = parts.train_data, parts.test_data
        self.meters = {m.name: (m.is_train, m.meter) for m in parts.metrics}
        self.train_meters = {m.name: m.meter for m in parts.metrics if m.is_train}
        self.test_meters = {m.name: m.meter for m in parts.metrics if not m.is_train}
        distributed.check_meters({m.name: m.meter for m in parts.metrics}, self.world_size)
        self.handlers = list(parts.handlers)
        self.dispatch = calls_by_event(type(self), AnyExp, self.handlers)  # at each event, what fire() calls
        self.unrecorded_iteration_end = [(handler, call) for handler, call in self.dispatch.get(Event.ITERATION_END, ())
                                         if handler is None or not handler.recorded_iterations_only]
        self.gen_output = parts.gen_output or output_generator.gen_output
        self.checkpoint_name = parts.checkpoint_name or gen_checkpoint_path.checkpoint_name

    # Views of the state, for components and handlers.
    history = property(lambda self: self.state.history, doc="Recorded rows: {'train': [...], 'test': [...]}.")
    latest = property(lambda self: self.state.latest, doc="The newest value of every recorded metric.")
    checkpoints = property(lambda self: self.state.checkpoints, doc="Checkpoints this run wrote, oldest first.")

    # ------------------------------------------------------------------ the loop

    def list_of_epochs(self) -> Iterable[int]:
        """Epochs still to run. Override to stop by loss, accuracy or time instead of a fixed count."""
        return range(self.state.epoch, self.info.num_epochs)

    def list_of_epoch_iters(self) -> Iterable[int]:
        """Iterations still to run in the current epoch, consecutive from `state.iteration`."""
        return range(self.state.iteration, self.epoch_iterations)

    def run(self) -> dict:
        """Train, test and checkpoint to the end (or a requested stop); return the results dict. A run restored
        from its final checkpoint only writes what it still owes (results, plots)."""
        if self.state.complete:
            log.info("the final checkpoint exists; writing the results it owes")
            return self.write_results()
        self.fire(Event.TRAIN_BEGIN)
        for epoch in self.list_of_epochs():
            self.run_epoch(epoch)
            if self.state.stop:
                break
        self.fire(Event.TRAIN_END)
        return self.conclude()

    def run_epoch(self, epoch: int) -> None:
        if epoch != self.state.epoch:
            self.state.epoch, self.state.iteration = epoch, 0
        self.fire(Event.EPOCH_BEGIN)
        train_batches = self.train_batches(epoch, self.state.iteration)
        self.network.train()
        steps = zip(*[train_batches] * self.info.accumulate_grad_batches)  # each step's batches, grouped in C
        self.state.throughput.restart(self.state.global_step)
        for iteration, batches in zip(self.list_of_epoch_iters(), steps):
            self.run_iteration(iteration, batches)
            if self.state.stop:
                self.save_checkpoint()
                return
        self.state.epoch, self.state.iteration = epoch + 1, 0
        self.fire(Event.EPOCH_END)
        if hasattr(self.lr_scheduler, "epoch_end"):  # a schedule on a test metric (ReduceLROnPlateau)
            self.lr_scheduler.epoch_end(self)
        distributed.agree_stop(self, now=True)
        self.save_checkpoint()

    def run_iteration(self, iteration: int, batches: Sequence) -> None:
        state, info, heard = self.state, self.info, self.dispatch
        state.iteration, self.row = iteration, None
        if Event.ITERATION_BEGIN in heard:  # per step, even the call to fire() costs (see loop_overhead.py)
            self.fire(Event.ITERATION_BEGIN)
        self.step_blobs = self.train_step(batches)
        self.blobs = self.step_blobs[-1]
        state.iteration, state.global_step = iteration + 1, state.global_step + 1
        end_of_epoch = state.iteration == self.epoch_iterations
        if end_of_epoch or state.global_step % info.record_every == 0:
            self.record_train()
        calls = heard.get(Event.ITERATION_END) if self.row is not None else self.unrecorded_iteration_end
        if calls:
            self.call_handlers(Event.ITERATION_END, calls, {})
        if end_of_epoch or (info.iterations_per_test and state.iteration % info.iterations_per_test == 0):
            state.throughput.pause()  # not training time
            self.run_test()
            state.throughput.resume()
        if self.world_size > 1 or state.stop_requested is not None:  # one process, no request: nothing to agree
            distributed.agree_stop(self)  # every rank stops at the same iteration, whichever rank was asked
        if self.checkpoint_due() and not end_of_epoch and not state.stop:  # run_epoch saves those
            state.throughput.pause()
            self.save_checkpoint()
            state.throughput.resume()

    def checkpoint_due(self) -> bool:
        """Whether this iteration boundary writes a checkpoint: one was requested or checkpoint_every says so
        (epoch ends and stops always write one)."""
        every = self.info.checkpoint_every
        return bool(self.state.checkpoint_requested or every and self.state.global_step % every == 0)

    def train_step(self, batches: Sequence) -> list[dict]:
        """One optimizer step on `batches` (accumulate_grad_batches of them); returns each one's blobs of
        `forward`. Their gradients are summed with each loss divided by their number, so the step equals one on
        all of them at once (for equal batch sizes); under DDP only the last one all-reduces. The first batch
        clears the old gradients after its forward: their memory then serves the new ones (~6% on a CPU
        ResNet-50, where fresh pages fault). One frame for all of it: each method call of a step costs 1-3 µs
        with the caches its torch work leaves cold (benchmarks/loop_overhead.py --profile)."""
        step_blobs, of = [], len(batches)
        for i, batch in enumerate(batches):
            with self.no_sync() if i < of - 1 else NO_CONTEXT:  # earlier batches skip DDP's all-reduce
                blobs = self.blobs_of(batch, self.train_dataset)
                if i == 0:
                    self.optimizer.zero_grad(set_to_none=True)
                loss = blobs["loss"] / of if of > 1 else blobs["loss"]  # dividing by 1: an op and its backward
                (self.scaler.scale(loss) if self.scales_loss else loss).backward()
            step_blobs.append(blobs)
        if self.info.grad_clip_norm or self.info.grad_clip_value:
            self.clip_gradients()
        if self.scales_loss:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        step_blobs[-1]["learning_rate"] = self.optimizer.param_groups[0]["lr"]  # the rate this step used
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        return step_blobs

    def clip_gradients(self) -> None:
        """Clip the summed gradients by grad_clip_norm or grad_clip_value, whichever is set (fp16: unscaled
        first, so the limit is in the gradients' true units)."""
        info = self.info
        self.scaler.unscale_(self.optimizer)
        if info.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), info.grad_clip_norm)
        else:
            torch.nn.utils.clip_grad_value_(self.network.parameters(), info.grad_clip_value)

    def forward(self, inputs: Any, labels: Any) -> dict:
        """Blobs of one batch, with at least a scalar 'loss'. The model component's Experiment defines it. The
        network is in eval mode (`self.network.training` false) in test passes: the time to decode outputs
        (non-maximum suppression, greedy decoding) for the meters that read them."""
        raise NotImplementedError(f"{type(self).__name__} must define forward(inputs, labels)")

    def run_test(self) -> None:
        """Measure the test meters (evaluate) and record them as a test row."""
        if self.test_dataset is None:
            return
        self.network.eval()
        self.row = None
        self.fire(Event.TEST_BEGIN)
        values = self.evaluate()
        self.state.test_passes += 1
        self.record("test", values)
        self.network.train()
        self.fire(Event.TEST_END)
        self.log_progress()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Every test meter over num_test_iter batches of the test set, with the network's current weights in eval
        mode, reduced over the processes; records nothing (handlers such as EMA call it with other weights)."""
        was_training = self.network.training
        self.network.eval()
        for meter in self.test_meters.values():
            meter.reset()
        for batch in self.test_batches():
            self.update_meters(self.test_meters, self.blobs_of(batch, self.test_dataset))
        values = distributed.compute_all(self.test_meters, self)
        self.network.train(was_training)
        return values

    # ------------------------------------------------------------------ pieces of the loop

    def train_batches(self, epoch: int, start: int) -> Iterator:
        """This process's batches of `epoch` from iteration `start` (accumulate_grad_batches per iteration): the
        same samples whenever it resumes. Iteration i trains on the samples i*T..(i+1)*T-1 of the epoch's order
        (T = total_batch_size), whatever the number of processes and of batches they are cut into."""
        if hasattr(self.train_dataset, "set_epoch"):
            self.train_dataset.set_epoch(epoch)
        k = self.info.accumulate_grad_batches
        order = data.epoch_order(len(self.train_dataset), self.epoch_iterations * self.total_batch_size,
                                 self.seed, epoch)
        indices = data.train_batch_indices(order, self.total_batch_size // k, self.rank, self.info.batch_per_device,
                                           start * k, self.epoch_iterations * k)
        return data.batches(self.train_dataset, indices, self.info.workers, self.seed + epoch,
                            self.device.type == "cuda")

    def test_batches(self) -> Iterator:
        """This process's batches of one test pass: its slices of the first num_test_iter global batches."""
        num_samples = min(self.info.num_test_sample or len(self.test_dataset), len(self.test_dataset))
        indices = data.test_batch_indices(num_samples, self.total_batch_size // self.info.accumulate_grad_batches,
                                          self.rank, self.info.batch_per_device, self.info.num_test_iter)
        return data.batches(self.test_dataset, [i for i in indices if i], self.info.workers, self.seed,
                            self.device.type == "cuda")

    def to_device(self, batch: Any, dataset: Any) -> tuple[Any, Any]:
        """`batch` of `dataset` as the network takes it, on this process's device. Inputs and labels may be
        tensors or tuples, lists and dicts of them (boxes per image, padded sequences with their lengths)."""
        inputs, labels = batch
        inputs = data.to_device(inputs, self.device, dataset, there=not self.moves_batches)
        if self.moves_batches:
            labels = data.move(labels, self.device)
        if self.info.channels_last and isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return inputs, labels

    def blobs_of(self, batch: Any, dataset: Any) -> dict:
        """`forward`'s blobs of one batch of `dataset` (training or testing), with its batch_size: on the device,
        under autocast with mixed precision (without, no context is entered: a few µs a step)."""
        inputs, labels = self.to_device(batch, dataset)
        if self.autocast_dtype is None:
            blobs = self.forward(inputs, labels)
        else:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                blobs = self.forward(inputs, labels)
        if "batch_size" not in blobs:  # forward may set it
            blobs["batch_size"] = data.batch_size(labels)
        return blobs

    def record_train(self) -> None:
        """Train meters on this iteration's batches, throughput since the last record, and the learning rate."""
        for meter in self.train_meters.values():
            meter.reset()
        for blobs in self.step_blobs:
            self.update_meters(self.train_meters, blobs)
        values = distributed.compute_all(self.train_meters, self)  # one reduction for all of them
        secs = self.state.throughput.take(self.state.global_step)
        values.update(secs_per_train=secs, samples_per_sec=self.total_batch_size / secs if secs else 0.0,
                      learning_rate=self.blobs["learning_rate"])
        self.record("train", values)

    def update_meters(self, meters: dict[str, Any], blobs: dict) -> None:
        """Each meter's update on `blobs` (without autograd: one context for all of them, not one each); a metric
        reading a blob that forward does not return is an opts error."""
        with torch.no_grad():
            for name, meter in meters.items():
                try:
                    meter.update(blobs)
                except KeyError as e:
                    raise UsageError(f"output.metrics: {name!r} reads the blob {e.args[0]!r}, which "
                                     f"{type(self).__name__}.forward does not return; it returns "
                                     f"{', '.join(map(str, blobs))}") from None

    def record(self, kind: str, values: dict[str, float]) -> None:
        """Append one row of `kind` ('train' or 'test') metrics at the current fractional epoch; it is the row
        of the current event (`self.row`) until the next one."""
        x = self.state.epoch + self.state.iteration / self.epoch_iterations
        self.row = {"epoch": x, "iteration": self.state.global_step, **values}
        self.state.history[kind].append(self.row)
        self.state.latest.update(values)

    def add_to_row(self, values: dict[str, float]) -> bool:
        """Add `values` to the row recorded at the current event (handlers of phase ADD_TO_ROW call this, so the
        writers see a complete row); False when this event recorded none."""
        if self.row is None:
            return False
        self.row.update(values)
        self.state.latest.update(values)
        return True

    def log_progress(self) -> None:
        row = {**(self.history["train"][-1] if self.history["train"] else {}), **self.history["test"][-1]}
        shown = " ".join(f"{k}={v:.4g}" for k, v in row.items() if k not in ("epoch", "iteration"))
        log.info("epoch %.2f iteration %d: %s", row["epoch"], row["iteration"], shown)

    def request_stop(self, reason: str | StopRequest) -> None:
        """Stop at the next iteration boundary, after a checkpoint (handlers and signals call this). With several
        processes every rank stops together, within about 0.1 s of training (see distributed.agree_stop)."""
        request = reason if isinstance(reason, StopRequest) else StopRequest("handler", reason)
        current = self.state.stop_requested
        if current is None or (request.kind == "signal" and current.kind != "signal"):
            self.state.stop_requested = request

    def request_checkpoint(self) -> None:
        """Write a checkpoint at the next iteration boundary (handlers call this; epoch ends always write one)."""
        self.state.checkpoint_requested = True

    def fire(self, event: Event, **kwargs: Any) -> None:
        """Call this experiment's hook `on_<event>`, then the handlers acting on it; an event nobody hears costs
        one lookup."""
        self.call_handlers(event, self.dispatch.get(event, ()), kwargs)

    def call_handlers(self, event: Event, calls: list[tuple[EventHandler | None, Callable]], kwargs: dict) -> None:
        """`calls` (of self.dispatch) at `event`: a handler's error becomes a HandlerError naming it."""
        for handler, call in calls:
            if handler is None:  # this experiment's own hook
                call(self, **kwargs)
                continue
            if handler.trigger is not None and not handler.trigger.lets_through(event, self):
                continue
            try:
                call(self, **kwargs)
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
        return checkpoint.capture(self)

    def load_checkpoint_state(self, saved: dict, weights_only: bool = False) -> None:
        """Restore a `checkpoint_state`; with weights_only, only the network's parameters and buffers."""
        checkpoint.restore_into(self, saved, weights_only)

    def save_checkpoint(self, final: bool = False) -> str | None:
        """Write a checkpoint (rank 0), prune old ones, and fire checkpoint_saved; return its path."""
        path = checkpoint.write(self, final)
        if path is not None:
            self.fire(Event.CHECKPOINT_SAVED, path=path)
        return path

    def conclude(self) -> dict:
        """Final checkpoint, then results.json and plots; raise Stopped if a signal ended the run early."""
        stop = self.state.stop
        if stop is not None and stop.kind == "signal":
            raise Stopped(f"stopped by {stop.reason} at epoch {self.state.epoch} iteration {self.state.iteration}; "
                          f"checkpoint in {self.folder}: re-run the same command to resume")
        if stop is not None:
            log.info("stopped early: %s", stop.reason)
        self.save_checkpoint(final=True)
        return self.write_results()

    def write_results(self) -> dict:
        """results.json and the plots (rank 0): written last, so a run is complete once they exist."""
        results = self.gen_output(self)
        if self.rank == 0:
            checkpoint.atomic_write(f"{self.folder}/results.json", checkpoint.json_bytes(results))
            plots.write(self.history, list(self.info.plots), self.folder)
        return results
