"""Opaque, signed pagination cursors."""

from __future__ import annotations

from uuid import UUID

from itsdangerous import BadSignature, URLSafeSerializer


class InvalidCursor(ValueError):
    pass


class CursorCodec:
    """Encodes where the next page starts, bound to the query's filters and signed, so a
    client can neither forge a cursor nor reuse one with different filters."""

    def __init__(self, secret_key: str) -> None:
        self._serializer = URLSafeSerializer(secret_key, salt="taskport.cursor")

    def encode(self, before: UUID, filters: dict[str, str | None]) -> str:
        return self._serializer.dumps({"before": before.hex, "filters": filters})

    def decode(self, cursor: str, filters: dict[str, str | None]) -> UUID:
        try:
            data = self._serializer.loads(cursor)
            # Signed, but maybe with a key that is known (the development default): what
            # it holds is checked all the same.
            if not isinstance(data, dict) or not isinstance(data.get("before"), str):
                raise ValueError("not what a cursor holds")
            before = UUID(hex=data["before"])
        except (BadSignature, ValueError) as exc:
            raise InvalidCursor("the cursor is not one this server issued") from exc
        if data.get("filters") != filters:
            raise InvalidCursor("the cursor belongs to a query with other filters")
        return before
