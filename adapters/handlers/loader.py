"""Finds the task kinds of a deployment: Taskport's own, the modules named in
``TASKPORT_HANDLER_MODULES`` and the entry points of the ``taskport.handlers`` group.

A module is scanned for ``@task_kind`` functions and ``Kind`` objects; an entry point may
name a module, a ``@task_kind`` function, a ``Kind`` or a list of them. Anything wrong
(a module that does not import, two kinds of one name) stops the process at start with a
message naming the culprits.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

import attrs

from adapters.handlers.registry import Kind, KindRegistry
from adapters.handlers.sdk import is_task_kind, kind_of

ENTRY_POINT_GROUP = "taskport.handlers"
BUILTIN_ORIGIN = "Taskport's builtin kinds"


class KindLoadError(ValueError):
    """The kinds of this deployment cannot be loaded; the message says why and where."""


def build_registry(
    builtin: Iterable[Kind], modules: Sequence[str] = (), group: str = ENTRY_POINT_GROUP
) -> KindRegistry:
    """The registry of ``builtin`` kinds plus every user kind; raises ``KindLoadError``."""
    kinds = [attrs.evolve(kind, origin=kind.origin or BUILTIN_ORIGIN) for kind in builtin]
    kinds += load_user_kinds(modules, group)
    try:
        return KindRegistry(kinds)
    except ValueError as exc:
        raise KindLoadError(str(exc)) from exc


def load_user_kinds(modules: Sequence[str], group: str = ENTRY_POINT_GROUP) -> list[Kind]:
    found: list[Kind] = []
    seen: set[int] = set()
    for name in modules:
        origin = f"module {name} (TASKPORT_HANDLER_MODULES)"
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            raise KindLoadError(
                f"cannot import handler module {name!r} named in TASKPORT_HANDLER_MODULES: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        kinds = _kinds_in(module, origin, seen)
        if not kinds:
            raise KindLoadError(f"handler module {name!r} defines no task kinds (@task_kind)")
        found += kinds
    for entry_point in sorted(entry_points(group=group), key=lambda ep: (ep.name, ep.value)):
        origin = _describe(entry_point, group)
        try:
            loaded = entry_point.load()
        except Exception as exc:
            raise KindLoadError(f"cannot load {origin}: {type(exc).__name__}: {exc}") from exc
        found += _kinds_in(loaded, origin, seen)
    return found


def _kinds_in(value: object, origin: str, seen: set[int]) -> list[Kind]:
    """The kinds ``value`` declares; the same object reached twice (a module re-exporting a
    kind of another) counts once."""
    if isinstance(value, ModuleType):
        members = [
            member
            for member in vars(value).values()
            if isinstance(member, Kind) or is_task_kind(member)
        ]
        return [kind for member in members for kind in _kinds_in(member, origin, seen)]
    if isinstance(value, list | tuple):
        return [kind for member in value for kind in _kinds_in(member, origin, seen)]
    if not isinstance(value, Kind) and not is_task_kind(value):
        raise KindLoadError(
            f"{origin} gives a {type(value).__name__}, not a module, a @task_kind function, "
            "a Kind or a list of them"
        )
    if id(value) in seen:
        return []
    seen.add(id(value))
    try:
        if isinstance(value, Kind):
            return [attrs.evolve(value, origin=value.origin or origin)]
        return [kind_of(value, origin)]  # type: ignore[arg-type]
    except ValueError as exc:
        raise KindLoadError(f"{origin}: {exc}") from exc


def _describe(entry_point: EntryPoint, group: str) -> str:
    dist = entry_point.dist
    package = f" of distribution {dist.name} {dist.version}" if dist is not None else ""
    return f"entry point {entry_point.name} = {entry_point.value} ({group}){package}"
