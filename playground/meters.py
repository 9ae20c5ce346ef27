"""Meters: accumulate sums over batches, report one number. Built-ins: ComputeLoss and ComputeTopKAccuracy.

A meter keeps its running sums in a 1-D float64 tensor `sums` on the batch's device, so measuring costs no
host synchronisation until `compute()`, and distributed runs reduce test metrics exactly by all-reducing
`sums` (sums of counts, never averages of averages).
"""
from __future__ import annotations

import torch


class Meter:
    """Protocol: reset(); update(blobs) per measured batch; compute() -> float. Subclasses define batch_sums."""

    def __init__(self, blob_name: str | list[str] = "loss"):
        names = [blob_name] if isinstance(blob_name, str) else blob_name
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise ValueError(f"blob_name must be a blob name or a list of them, got {blob_name!r}")
        self.blob_name = blob_name
        self.sums: torch.Tensor | None = None

    def reset(self) -> None:
        self.sums = None

    @torch.no_grad()
    def update(self, blobs: dict) -> None:
        batch = self.batch_sums(blobs)
        self.sums = batch if self.sums is None else self.sums + batch

    def batch_sums(self, blobs: dict) -> torch.Tensor:
        """The sums this batch adds, as a 1-D float64 tensor; the last entry is conventionally the sample count."""
        raise NotImplementedError

    def compute(self) -> float:
        total, count = self.sums.tolist() if self.sums is not None else (0.0, 0.0)
        return total / count if count else float("nan")


class ComputeLoss(Meter):
    """Mean of the scalar blob `blob_name` (a per-batch mean), weighted by batch size."""

    def batch_sums(self, blobs: dict) -> torch.Tensor:
        loss, n = blobs[self.blob_name].detach().double(), blobs["batch_size"]
        return torch.stack((loss * n, loss.new_tensor(n)))


class ComputeTopKAccuracy(Meter):
    """Fraction of samples whose label is among the `topk` highest scores. blob_name: [scores, labels]."""

    def __init__(self, blob_name: list[str] = ("softmax", "label"), topk: int = 1):
        if isinstance(blob_name, str) or not isinstance(blob_name, (list, tuple)) or len(blob_name) != 2:
            raise ValueError(f"blob_name must name [scores, labels], got {blob_name!r}")
        super().__init__(list(blob_name))
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise ValueError(f"topk must be a positive integer, got {topk!r}")
        self.topk = topk

    def batch_sums(self, blobs: dict) -> torch.Tensor:
        scores, labels = blobs[self.blob_name[0]].detach(), blobs[self.blob_name[1]]
        if self.topk == 1:
            hits = scores.argmax(dim=-1) == labels
        else:
            k = min(self.topk, scores.shape[-1])
            hits = (scores.topk(k, dim=-1).indices == labels.unsqueeze(-1)).any(dim=-1)
        correct = hits.sum(dtype=torch.float64)
        return torch.stack((correct, correct.new_tensor(len(labels))))
