"""The body Pub/Sub POSTs to a push endpoint."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from pydantic import AliasChoices, BaseModel, ConfigDict, Field


class PushedMessage(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    data: str = ""
    attributes: dict[str, str] = Field(default_factory=dict)
    message_id: str = Field(min_length=1, validation_alias=AliasChoices("messageId", "message_id"))
    publish_time: datetime | None = Field(
        default=None, validation_alias=AliasChoices("publishTime", "publish_time")
    )

    def decoded_data(self) -> bytes:
        """The message's bytes; ``ValueError`` when ``data`` is not base64."""
        try:
            return base64.b64decode(self.data, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"message data is not base64: {exc}") from exc


class PushEnvelope(BaseModel):
    """``{"message": {"data", "attributes", "messageId", "publishTime"}, "subscription",
    "deliveryAttempt"}``; ``deliveryAttempt`` only with a dead-letter policy."""

    model_config = ConfigDict(populate_by_name=True)

    message: PushedMessage
    subscription: str = Field(min_length=1)
    delivery_attempt: int | None = Field(
        default=None, ge=1, validation_alias=AliasChoices("deliveryAttempt", "delivery_attempt")
    )
