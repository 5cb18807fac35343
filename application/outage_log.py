"""Logging what an outage of storage or broker holds back, without a line for each item: a
worker holding many deliveries, or many outcomes to write, would otherwise log each of them
at each of its tries."""

from __future__ import annotations

import logging
from typing import Any

EVERY = 100
"""After the first, one held-back item in this many is logged, with the count so far."""


class OutageLog:
    """Counts the items an outage holds back: the first is logged as a warning, then one in
    ``EVERY`` (the rest at debug level), each with the count; ``over`` logs once that the
    outage is over, when one was under way."""

    def __init__(self, logger: logging.Logger, items: str) -> None:
        self._logger = logger
        self._items = items
        self._held = 0

    def held_back(self, message: str, *args: Any) -> None:
        self._held += 1
        level = logging.WARNING if self._held == 1 or self._held % EVERY == 0 else logging.DEBUG
        self._logger.log(
            level, f"{message} (%d {self._items} held back in this outage)", *args, self._held
        )

    def over(self, done: str) -> None:
        if self._held:
            self._logger.info("%s after %d %s were held back", done, self._held, self._items)
            self._held = 0
