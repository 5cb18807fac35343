"""The registry of task kinds: name -> handler, with an optional payload model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from attrs import frozen
from pydantic import BaseModel, ValidationError

from application.errors import InvalidPayload, UnknownKind
from application.ports.handlers import KindInfo, TaskHandler
from domain.values import JsonValue


@frozen
class Kind:
    """A task kind: its name, the handler that runs it and, optionally, the pydantic model
    its payload must satisfy (checked at submit, so a bad payload never reaches a worker)."""

    name: str
    handler: TaskHandler
    description: str = ""
    payload_model: type[BaseModel] | None = None


class KindRegistry:
    def __init__(self, kinds: Iterable[Kind]) -> None:
        self._kinds: dict[str, Kind] = {}
        for kind in kinds:
            if kind.name in self._kinds:
                raise ValueError(f"task kind {kind.name!r} is registered twice")
            self._kinds[kind.name] = kind

    def get(self, kind: str) -> TaskHandler | None:
        found = self._kinds.get(kind)
        return found.handler if found is not None else None

    def validate(self, kind: str, payload: JsonValue) -> JsonValue:
        found = self._kinds.get(kind)
        if found is None:
            raise UnknownKind(kind, sorted(self._kinds))
        if found.payload_model is None:
            return payload
        try:
            model = found.payload_model.model_validate(payload)
        except ValidationError as exc:
            errors = [
                f"{'.'.join(map(str, error['loc'])) or 'payload'}: {error['msg']}"
                for error in exc.errors()
            ]
            raise InvalidPayload(kind, errors) from exc
        return model.model_dump(mode="json")

    def kinds(self) -> Sequence[KindInfo]:
        return [
            KindInfo(
                name=kind.name,
                description=kind.description,
                payload_schema=kind.payload_model.model_json_schema()
                if kind.payload_model
                else None,
            )
            for kind in sorted(self._kinds.values(), key=lambda kind: kind.name)
        ]
