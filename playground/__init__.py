"""playground: deep-learning experiments in PyTorch, driven by JSON opts that name swappable components."""
from playground.anyexp import AnyExp
from playground.errors import PlaygroundError
from playground.events import Event, EventHandler

__all__ = ["AnyExp", "Estimator", "Event", "EventHandler", "PlaygroundError"]


def __getattr__(name: str):
    """`playground.Estimator`, imported on first use (it pulls in the runner, the lab book and the handlers)."""
    if name == "Estimator":
        from playground.estimator import Estimator

        return Estimator
    raise AttributeError(f"module 'playground' has no attribute {name!r}")


__version__ = "0.1.0"
