"""What a JSON value (a payload, a result) must be to be stored, and read back the same,
on every storage."""

from __future__ import annotations

import json
import math
from typing import Any

from domain.values import JsonValue, not_text

MAX_DEPTH = 100
"""Arrays and objects nest at most this deep in a payload or a result: well within what the
JSON parsers and serializers on the way accept (pydantic-core's parser about 200 levels,
its serializer 255), so a stored task can always be served back."""


def json_size(value: JsonValue) -> int:
    """The bytes of ``value``'s JSON in UTF-8, as it is served: no space after a comma or a
    colon (spaces would count a long array half again), no character escaped (escaped, one
    outside ASCII would count up to six times over). Raises ``TypeError`` or ``ValueError``
    for a value that is not JSON."""
    compact = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    return len(compact.encode())


_Trail = tuple["_Trail", str | int] | None
"""Where a value sits: its parent's trail and its key or index (``None`` at the top)."""


def unstorable(value: JsonValue, name: str) -> str | None:
    """Why ``value`` (called ``name`` in the answer) cannot be stored as it is, or ``None``:

    - a number that is not finite: NaN and Infinity are not JSON, though Python's ``json``
      writes and reads them;
    - a string or a key holding the NUL character (``\\u0000``): valid JSON, but
      PostgreSQL can keep it neither in ``jsonb`` nor in text;
    - a string or a key holding a lone surrogate (``\\ud800``): valid JSON to Python's
      ``json``, but not Unicode text, which UTF-8 (and so every storage) cannot encode;
    - arrays and objects nested more than ``MAX_DEPTH`` levels deep.
    """
    waiting: list[tuple[Any, _Trail, int]] = [(value, None, 0)]
    while waiting:
        item, trail, depth = waiting.pop()
        if isinstance(item, dict | list | tuple) and depth == MAX_DEPTH:
            return f"{_where(name, trail)}: nested more than {MAX_DEPTH} levels deep"
        if isinstance(item, str):
            if problem := _not_text(item):
                return f"{_where(name, trail)}: a string holds {problem}"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{_where(name, trail)}: {item} is not a JSON number"
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and (problem := _not_text(key)):
                    return f"{_where(name, trail)}: a key holds {problem}"
                waiting.append((child, (trail, key), depth + 1))
        elif isinstance(item, list | tuple):
            waiting.extend((child, (trail, index), depth + 1) for index, child in enumerate(item))
    return None


def _not_text(text: str) -> str | None:
    found = not_text(text)
    if found is None:
        return None
    if found == "\x00":
        return "the NUL character (\\u0000)"
    return "a lone surrogate, which is not Unicode text"


_SHOWN_STEPS = 10
"""Steps of a path shown at most (then ``…``): the path of a value nested too deep would
otherwise repeat a hundred of them."""


def _where(name: str, trail: _Trail) -> str:
    steps: list[str | int] = []
    while trail is not None:
        trail, step = trail
        steps.append(step)
    steps.reverse()
    path = name
    for step in steps[:_SHOWN_STEPS]:
        path += f"[{step}]" if isinstance(step, int) else f".{step}"
    return path + ("…" if len(steps) > _SHOWN_STEPS else "")
