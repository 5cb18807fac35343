"""The registry of task kinds: name -> handler, with an optional payload schema."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jsonschema
from attrs import field, frozen
from pydantic import BaseModel, ValidationError

from application.errors import InvalidPayload, UnknownKind
from application.ports.handlers import KindInfo, TaskHandler
from domain.task import KIND_PATTERN
from domain.values import JsonValue


def check_kind_name(name: str) -> None:
    """Raises ``ValueError`` for a name no task could have (``KIND_PATTERN``)."""
    if not KIND_PATTERN.fullmatch(name):
        raise ValueError(
            f"task kind name {name!r} must be 1-100 characters of a-z, 0-9, '_', '.', '-' "
            "starting with a letter"
        )


class KindConflict(ValueError):
    """Two kinds of the same name: the process refuses to start."""


@frozen
class Kind:
    """A task kind: its name, the handler that runs it and, optionally, what its payload
    must satisfy, checked at submit (so a bad payload never reaches a worker): a pydantic
    model (``payload_model``) or a JSON Schema (``payload_schema``), not both.

    ``origin`` says where the kind came from, for messages about it."""

    name: str
    handler: TaskHandler
    description: str = ""
    payload_model: type[BaseModel] | None = None
    payload_schema: Mapping[str, Any] | None = None
    origin: str = ""
    # Built once, not per submit or per GET /v1/kinds.
    _validator: Any = field(init=False, default=None, eq=False, repr=False)
    _json_schema: dict[str, JsonValue] | None = field(
        init=False, default=None, eq=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        check_kind_name(self.name)  # else every submit of it would be refused
        if self.payload_model is not None and self.payload_schema is not None:
            raise ValueError(f"task kind {self.name!r} has both a payload model and a schema")
        if self.payload_schema is not None:
            checker = jsonschema.validators.validator_for(self.payload_schema)
            try:
                checker.check_schema(self.payload_schema)
            except jsonschema.SchemaError as exc:
                raise ValueError(
                    f"task kind {self.name!r} has an invalid payload schema: {exc.message}"
                ) from exc
            object.__setattr__(self, "_validator", checker(self.payload_schema))

    def validate(self, payload: JsonValue) -> JsonValue:
        """The payload as the handler will receive it; raises ``InvalidPayload``."""
        if self.payload_model is not None:
            try:
                model = self.payload_model.model_validate(payload)
            except ValidationError as exc:
                errors = [
                    f"{'.'.join(map(str, error['loc'])) or 'payload'}: "
                    + error["msg"].removeprefix("Value error, ")  # a validator's own words
                    for error in exc.errors()
                ]
                raise InvalidPayload(self.name, errors) from exc
            return model.model_dump(mode="json", by_alias=True)
        if self._validator is not None:
            found = sorted(self._validator.iter_errors(payload), key=lambda error: list(error.path))
            if found:
                raise InvalidPayload(
                    self.name, [f"{error.json_path}: {error.message}" for error in found]
                )
        return payload

    def schema(self) -> dict[str, JsonValue] | None:
        if self._json_schema is None:
            if self.payload_model is not None:
                object.__setattr__(self, "_json_schema", self.payload_model.model_json_schema())
            elif self.payload_schema is not None:
                object.__setattr__(self, "_json_schema", dict(self.payload_schema))
        return self._json_schema


class KindRegistry:
    def __init__(self, kinds: Iterable[Kind]) -> None:
        self._kinds: dict[str, Kind] = {}
        for kind in kinds:
            if (first := self._kinds.get(kind.name)) is not None:
                raise KindConflict(
                    f"task kind {kind.name!r} is defined twice: "
                    f"by {first.origin or 'an unnamed origin'} "
                    f"and by {kind.origin or 'an unnamed origin'}"
                )
            self._kinds[kind.name] = kind

    def get(self, kind: str) -> TaskHandler | None:
        found = self._kinds.get(kind)
        return found.handler if found is not None else None

    def validate(self, kind: str, payload: JsonValue) -> JsonValue:
        found = self._kinds.get(kind)
        if found is None:
            raise UnknownKind(kind, sorted(self._kinds))
        return found.validate(payload)

    def kinds(self) -> Sequence[KindInfo]:
        return [
            KindInfo(name=kind.name, description=kind.description, payload_schema=kind.schema())
            for kind in sorted(self._kinds.values(), key=lambda kind: kind.name)
        ]
