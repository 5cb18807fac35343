from __future__ import annotations

import itertools

import pytest

from adapters.codecs import CursorCodec, InvalidCursor
from adapters.system import Uuid7Generator


def test_ids_are_version_7_and_strictly_increasing() -> None:
    ids = Uuid7Generator()
    generated = [ids.new_id() for _ in range(20_000)]
    assert all(uuid.version == 7 for uuid in generated)
    assert all(a < b for a, b in itertools.pairwise(generated))


def test_a_cursor_round_trips_only_with_its_key_and_filters() -> None:
    codec = CursorCodec("secret")
    before = Uuid7Generator().new_id()
    cursor = codec.encode(before, {"status": "QUEUED", "kind": None})
    assert codec.decode(cursor, {"status": "QUEUED", "kind": None}) == before
    with pytest.raises(InvalidCursor, match="other filters"):
        codec.decode(cursor, {"status": None, "kind": None})
    with pytest.raises(InvalidCursor):
        CursorCodec("another secret").decode(cursor, {"status": "QUEUED", "kind": None})
    with pytest.raises(InvalidCursor):
        codec.decode("not-a-cursor", {})
