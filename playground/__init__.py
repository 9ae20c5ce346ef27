"""playground: deep-learning experiments in PyTorch, driven by JSON opts that name swappable components."""
from playground.anyexp import AnyExp
from playground.errors import PlaygroundError
from playground.events import Event, EventHandler

__all__ = ["AnyExp", "Event", "EventHandler", "PlaygroundError"]
__version__ = "0.1.0"
