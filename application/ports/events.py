from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from domain.events import TaskEvent


class EventListener(Protocol):
    """Hears the domain events of each committed change, after the commit, in the order
    they were recorded. ``committed`` runs on the event loop: it must be quick and must
    not raise."""

    def committed(self, events: Sequence[TaskEvent]) -> None: ...
