from __future__ import annotations

import itertools

import pytest
from itsdangerous import URLSafeSerializer

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


@pytest.mark.parametrize(
    "content",
    [{"before": 123, "filters": {}}, {"before": [], "filters": {}}, {"before": "zz"}, [1], 7],
)
def test_a_signed_cursor_holding_something_else_is_invalid(content: object) -> None:
    """Signed with the key (the development default is known to anyone)."""
    forged = URLSafeSerializer("secret", salt="taskport.cursor").dumps(content)
    with pytest.raises(InvalidCursor, match="not one this server issued"):
        CursorCodec("secret").decode(forged, {})
