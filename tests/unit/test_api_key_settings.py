"""TASKPORT_API_KEYS: what the setting accepts, and what stops the process at start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from entrypoints.settings import Settings


def test_keys_of_printable_ascii_characters_are_accepted() -> None:
    settings = Settings(api_keys="alice:a1!b~c=/+,bob:x.y_z-0,carol:two words")
    assert settings.api_keys == [("alice", "a1!b~c=/+"), ("bob", "x.y_z-0"), ("carol", "two words")]


@pytest.mark.parametrize("key", ["clé", "ключ", "tab\there", "del\x7f", "bell\x07"])
def test_a_key_no_bearer_header_can_carry_stops_the_start(key: str) -> None:
    """An HTTP header is read as Latin-1 bytes: a key outside printable ASCII would match no
    client sending it in UTF-8 (and most clients refuse to send it at all)."""
    with pytest.raises(ValidationError, match="printable ASCII") as raised:
        Settings(api_keys=f"alice:good,carol:{key}")
    assert "carol" in str(raised.value)
