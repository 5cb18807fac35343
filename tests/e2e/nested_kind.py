"""A kind whose payload model nests another: its JSON Schema has local ``$defs``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from adapters.handlers.sdk import TaskContext, task_kind


class Size(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int
    height: int


class ResizeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str
    size: Size


@task_kind("resize", payload=ResizeIn, description="a payload with a nested model")
def resize(payload: ResizeIn, context: TaskContext) -> dict[str, int]:
    return {"pixels": payload.size.width * payload.size.height}
