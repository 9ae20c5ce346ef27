"""Checkpoint-path component: model_checkpoint_epoch{N}.pt, ..._epoch{N}_iter{I}.pt mid-epoch, model_final.pt."""


def checkpoint_name(exp, epoch: int, iteration: int, final: bool) -> str:
    """`epoch` counts completed epochs; `iteration` the iterations done in the next one (mid-epoch saves)."""
    if final:
        return "model_final.pt"
    if iteration:
        return f"model_checkpoint_epoch{epoch}_iter{iteration}.pt"
    return f"model_checkpoint_epoch{epoch}.pt"
