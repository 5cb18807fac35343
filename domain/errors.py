"""Errors raised by the domain when a rule would be broken."""

from __future__ import annotations


class DomainError(Exception):
    """Base class of every domain rule violation."""


class IllegalTransition(DomainError):
    """A transition was asked of a task in a state that forbids it."""

    def __init__(self, transition: str, status: str, reason: str | None = None) -> None:
        self.transition = transition
        self.status = status
        detail = f"cannot {transition} a task that is {status}"
        super().__init__(f"{detail}: {reason}" if reason else detail)


class InvalidTask(DomainError):
    """A task was described with values the domain does not accept."""


class InvalidSchedule(DomainError):
    """A schedule was described with values the domain does not accept."""
