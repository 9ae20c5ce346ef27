"""The loop skips what a run does not use (events nobody hears, no-op contexts, a disabled GradScaler, dividing the
loss by one batch, converting index lists to tensors element by element), and each shortcut changes nothing: the
batches, the weights and the events are those of the loop that did all of it."""
from __future__ import annotations

import copy
import hashlib

import torch
import torch.nn.functional as F

from playground import data
from playground.builtins.synthetic_input import make
from playground.meters import ComputeLoss
from playground.events import EventHandler
from playground.testing import TinyExperiment, tiny_experiment


def digest(batches) -> str:
    sha = hashlib.sha256()
    for batch in batches:
        for tensor in batch:
            sha.update(tensor.numpy().tobytes())
    return sha.hexdigest()[:16]


def test_batches_are_bitwise_those_fetched_before_the_shortcuts():
    """Digests recorded with the loop that built each index tensor with torch.tensor(list) and indexed t[index]."""
    dataset = make(200, 4, 3, 1.0, seed=3, split="train")
    found = []
    for epoch in (0, 1):
        order = data.epoch_order(len(dataset), 160, seed=3, epoch=epoch)
        for rank, per_rank in ((0, 16), (1, 8)):  # one process; rank 1 of two
            indices = data.train_batch_indices(order, 16, rank, per_rank, start=2 * epoch, stop=10)
            found.append(digest(data.batches(dataset, indices, workers=0, seed=3, pin_memory=False)))
    test_indices = [i for i in data.test_batch_indices(150, 16, 1, 8, 0) if i]
    found.append(digest(data.batches(dataset, test_indices, workers=0, seed=3, pin_memory=False)))
    assert found == ["ee230aadda05a3e6", "22cb0597733d98b8", "bcde7b725b785177", "a54d18acb68081a0",
                     "dc5bdeb0cf48a388"]


def test_the_loop_fetches_the_same_batches_as_before_and_on_resume():
    exp = tiny_experiment("", iterations=5, batch_size=8, seed=3, accumulate_grad_batches=2, total_batch_size=16)
    exp.train_dataset = make(200, 4, 3, 1.0, seed=3, split="train")
    assert [digest(exp.train_batches(epoch, start)) for epoch, start in ((0, 0), (1, 0), (1, 3))] == [
        "58dd581dc73f649f", "3d36b081ec66cfd6", "49b624b859b3e18b"]


class Heard(EventHandler):
    """Hears one event only."""

    def __init__(self, calls: list[str]):
        self.calls = calls

    def on_iteration_begin(self, exp):
        self.calls.append(f"handler.iteration_begin@{exp.state.global_step}")


def test_an_event_is_heard_by_the_hook_of_a_subclass_or_override_and_by_handlers_alone(tmp_path):
    calls: list[str] = []
    # What additional_override_py builds: a subclass whose hook replaces AnyExp's no-op.
    with_hook = type("WithHook", (TinyExperiment,), {
        "on_iteration_end": lambda self: calls.append(f"hook.iteration_end@{self.state.global_step}")})
    plain = tiny_experiment(tmp_path / "hook", epochs=1, iterations=2)
    exp = with_hook(plain.parts, plain.info)
    exp.run()
    assert calls == ["hook.iteration_end@1", "hook.iteration_end@2"]
    calls.clear()
    tiny_experiment(tmp_path / "handler", [Heard(calls)], epochs=1, iterations=2).run()
    assert calls == ["handler.iteration_begin@0", "handler.iteration_begin@1"]


def handwritten(init: dict, inputs: torch.Tensor, labels: torch.Tensor, steps: int, batch: int) -> dict:
    net = torch.nn.Linear(inputs.shape[1], 3)
    net.load_state_dict(init)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    order = data.epoch_order(len(inputs), steps * batch, 0, 0)
    for step in range(steps):
        index = order[step * batch:(step + 1) * batch]
        loss = F.cross_entropy(net(inputs[index]), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return net.state_dict()


def test_one_batch_per_step_without_mixed_precision_equals_a_handwritten_loop_bitwise(tmp_path):
    """No division of the loss, no GradScaler call, no context: the same weights as plain torch, bit for bit."""
    exp = tiny_experiment(tmp_path, epochs=1, iterations=4, batch_size=8)
    init = copy.deepcopy(exp.network.state_dict())
    exp.run()
    expected = handwritten(init, *exp.train_dataset.tensors, steps=4, batch=8)
    for name, value in exp.network.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_forward_runs_under_autocast_exactly_when_mixed_precision_is_on(tmp_path):
    seen: list[tuple[bool, bool]] = []

    class Spy(TinyExperiment):
        def forward(self, inputs, labels):
            seen.append((self.network.training, torch.is_autocast_enabled("cpu")))
            return super().forward(inputs, labels)

    for precision in ("", "bf16"):
        plain = tiny_experiment(tmp_path / (precision or "fp32"), epochs=1, iterations=2, mixed_precision=precision)
        seen.clear()
        Spy(plain.parts, plain.info).run()
        assert {training for training, _ in seen} == {True, False}  # training and test batches
        assert {autocast for _, autocast in seen} == {precision == "bf16"}, precision


def test_each_step_takes_its_own_consecutive_batches_and_no_batch_more(tmp_path):
    """Batches are grouped per step as they are fetched (accumulate_grad_batches of them): step i gets batches
    k*i..k*i+k-1 of the epoch, and the epoch fetches exactly iterations * k of them."""
    steps: list[list[str]] = []
    fetched: list[str] = []

    class Spy(TinyExperiment):
        def train_batches(self, epoch, start):
            for batch in super().train_batches(epoch, start):
                fetched.append(digest([batch]))
                yield batch

        def train_step(self, batches):
            steps.append([digest([batch]) for batch in batches])
            return super().train_step(batches)

    plain = tiny_experiment(tmp_path, epochs=1, iterations=3, batch_size=4, accumulate_grad_batches=2,
                            total_batch_size=8)
    plain.train_dataset = make(64, 4, 3, 1.0, seed=3, split="train")
    Spy(plain.parts, plain.info).run_epoch(0)
    assert len(fetched) == 6 and steps == [fetched[0:2], fetched[2:4], fetched[4:6]]


def test_meters_build_no_autograd_graph_even_when_they_do_not_detach(tmp_path):
    class Undetached(ComputeLoss):
        def batch_sums(self, blobs):  # reads the loss as it is, requiring grad
            return torch.stack((blobs["loss"] * blobs["batch_size"], torch.ones(()))).double()

    exp = tiny_experiment(tmp_path, epochs=1, iterations=2)
    meter = Undetached("loss")
    exp.train_meters["train_undetached"] = meter
    exp.run_epoch(0)
    assert meter.sums is not None and not meter.sums.requires_grad
