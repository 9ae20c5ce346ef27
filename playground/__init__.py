"""playground: deep-learning experiments in PyTorch, driven by JSON opts that name swappable components."""
from playground.errors import PlaygroundError
from playground.events import Event, EventHandler

__all__ = ["AnyExp", "Estimator", "Event", "EventHandler", "PlaygroundError"]


def __getattr__(name: str):
    """`playground.AnyExp` and `playground.Estimator`, imported on first use: they pull in torch (about 1 s), which
    commands that do not train, such as make-lmdb, then never import."""
    if name == "AnyExp":
        from playground.anyexp import AnyExp

        return AnyExp
    if name == "Estimator":
        from playground.estimator import Estimator

        return Estimator
    raise AttributeError(f"module 'playground' has no attribute {name!r}")


__version__ = "0.1.0"
