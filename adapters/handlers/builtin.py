"""The kinds every Taskport deployment has: echo, sleep, fail and predict."""

from __future__ import annotations

import asyncio
import hashlib
import math

from pydantic import BaseModel, ConfigDict, Field

from adapters.handlers.registry import Kind
from application.errors import PermanentFailure
from application.ports.handlers import TaskContext
from domain.values import JsonValue


async def echo(payload: JsonValue, context: TaskContext) -> JsonValue:
    return payload


class SleepPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    seconds: float = Field(ge=0, le=3600, description="how long to sleep")


async def sleep(payload: JsonValue, context: TaskContext) -> JsonValue:
    request = SleepPayload.model_validate(payload)
    await asyncio.sleep(request.seconds)
    return {"slept": request.seconds}


class FailPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    message: str = Field(default="failed on purpose", max_length=1000)
    permanent: bool = Field(default=False, description="fail without retrying")


async def fail(payload: JsonValue, context: TaskContext) -> JsonValue:
    request = FailPayload.model_validate(payload)
    if request.permanent:
        raise PermanentFailure(request.message)
    raise RuntimeError(request.message)


class PredictPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    features: dict[str, float] = Field(max_length=1000, description="feature name -> value")
    latency_ms: float = Field(default=0, ge=0, le=60_000, description="simulated model latency")


MODEL_NAME = "taskport-mock-linear-1"


def _weight(feature: str) -> float:
    """A fixed weight in [-1, 1) per feature name: the mock model's parameters."""
    digest = hashlib.sha256(feature.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**31 - 1


async def predict(payload: JsonValue, context: TaskContext) -> JsonValue:
    """A deterministic mock model: a logistic score over hashed feature weights."""
    request = PredictPayload.model_validate(payload)
    if request.latency_ms:
        await asyncio.sleep(request.latency_ms / 1000)
    logit = sum(_weight(name) * value for name, value in sorted(request.features.items()))
    score = 1 / (1 + math.exp(-max(min(logit, 500.0), -500.0)))
    return {
        "label": "positive" if score >= 0.5 else "negative",
        "score": round(score, 6),
        "model": MODEL_NAME,
    }


BUILTIN_KINDS = (
    Kind("echo", echo, "returns its payload as the result"),
    Kind("sleep", sleep, "sleeps for payload.seconds, then returns", SleepPayload),
    Kind("fail", fail, "always fails with payload.message (exercises retries)", FailPayload),
    Kind(
        "predict",
        predict,
        "scores payload.features with a deterministic mock model",
        PredictPayload,
    ),
)
