"""Two task kinds, as a package of your own would write them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from adapters.handlers.sdk import PermanentFailure, TaskContext, task_kind


class ResizePayload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    source: str = Field(min_length=1, description="the image to resize")
    width: int = Field(gt=0, le=4096)
    height: int = Field(gt=0, le=4096)
    steps: int = Field(default=4, ge=1, le=1000, description="pieces of work to report on")
    step_seconds: float = Field(default=0, ge=0, le=60, description="simulated work per step")


@task_kind("thumbnails.resize", payload=ResizePayload, description="resizes an image (simulated)")
def resize(payload: ResizePayload, context: TaskContext) -> dict[str, Any]:
    """A plain function: Taskport runs it in a thread, so it may block."""
    for step in range(payload.steps):
        # The "work" of a step; waiting on the cancel signal stops at once on cancel.
        if context.cancelled.wait(payload.step_seconds):
            raise PermanentFailure("cancelled")
        context.report_progress((step + 1) / payload.steps, f"step {step + 1}/{payload.steps}")
    return {
        "thumbnail": f"{payload.source}@{payload.width}x{payload.height}",
        "attempt": context.attempt,
    }


PALETTE_SCHEMA = {
    "type": "object",
    "properties": {
        "colors": {
            "type": "array",
            "items": {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$", "maxLength": 7},
            "minItems": 1,
        }
    },
    "required": ["colors"],
    "additionalProperties": False,
}


@task_kind("thumbnails.palette", payload=PALETTE_SCHEMA)
async def palette(payload: dict[str, Any], context: TaskContext) -> dict[str, Any]:
    """Returns the distinct colours of payload.colors, sorted (a JSON Schema payload)."""
    return {"palette": sorted({color.lower() for color in payload["colors"]})}
