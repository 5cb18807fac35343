"""Every setting of Taskport, read once from ``TASKPORT_*`` environment variables."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from domain.values import DEFAULT_QUEUE, MAX_OWNER_LENGTH, queue_name_problem

DEV_SECRET_KEY = "taskport-local-development-only"
PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")
LOCAL_OWNER = "local"
MAX_RETENTION_SECONDS = 100 * 365 * 86400
"""A retention (or a worker's lost and prune thresholds) reaches back at most a century:
the cutoff stays a date."""
WEBHOOK_SECRET_PREFIX = "whsec_"
MAX_QUEUES = 40
"""Each queue is a task queue and six delay queues on RabbitMQ, a topic and a subscription
on Pub/Sub; a worker's queues are recorded in the registry (at most 40 names of 40)."""


def webhook_secret_valid(secret: str) -> bool:
    """A Standard Webhooks secret: ``whsec_`` and the base64 of 24 to 64 bytes."""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        return False
    try:
        key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    except binascii.Error:
        return False
    return 24 <= len(key) <= 64


def _secret_text(secret: object) -> str:
    return secret.get_secret_value() if isinstance(secret, SecretStr) else str(secret)


def url_scheme(url: str) -> str:
    """The adapter family a URL names: ``postgresql+asyncpg://`` is ``postgresql``."""
    return urlsplit(url).scheme.split("+", 1)[0].lower()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASKPORT_", extra="ignore", frozen=True)

    environment: Literal["local", "staging", "production"] = "local"
    storage_url: str = Field(
        default="sqlite:///./data/taskport.db",
        description=(
            "memory://, sqlite:///path, postgresql://user:password@host/database or "
            "mongodb://host:port/database"
        ),
    )
    broker_url: str = Field(
        default="memory://",
        description="memory://, amqp://user:password@host/vhost or pubsub://PROJECT_ID",
    )
    publish_events: bool = Field(
        default=False,
        description="publish each task's outcome (succeeded, failed, cancelled) on the "
        "broker for other systems: RabbitMQ's <prefix>.events exchange or the Pub/Sub "
        "events topic",
    )
    pubsub_create: bool = Field(
        default=False,
        description="create the Pub/Sub topics and subscriptions at start (dev, emulator)",
    )
    embedded_worker: bool | None = Field(
        default=None, description="run the worker in the API process; default: on for memory://"
    )
    api_keys: Annotated[list[tuple[str, str]], NoDecode] = Field(
        default_factory=list,
        description="owner:key,owner:key; an owner may have several keys (while one is replaced)",
    )
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    migrate_on_start: bool | None = Field(
        default=None,
        description="apply pending migrations at start; default: on for sqlite, off otherwise",
    )
    push_auth: Literal["oidc", "none"] | None = Field(
        default=None,
        description="how the Pub/Sub push webhook authenticates: default none in local, "
        "oidc otherwise; none is refused outside local",
    )
    push_audience: str | None = Field(
        default=None, description="the audience of the push subscription's OIDC tokens"
    )
    push_service_account: str | None = Field(
        default=None, description="the service account the push subscription's tokens name"
    )
    worker_concurrency: int = Field(default=64, ge=1, le=1000)
    queues: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [DEFAULT_QUEUE],
        description="the deployment's queues, the same in every process: default,images",
    )
    worker_queues: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="the queues this process's worker takes (all of TASKPORT_QUEUES if empty), "
        "each with the most of its tasks it runs at once after a colon when it has a limit: "
        "default,images:4",
    )
    default_max_attempts: int = Field(default=3, ge=1, le=100)
    default_timeout_seconds: float = Field(default=300, gt=0, le=86400)
    retry_base_seconds: float = Field(default=1, ge=0, le=3600)
    retry_max_seconds: float = Field(default=300, ge=0, le=86400)
    sweep_interval_seconds: float = Field(default=0.5, gt=0, le=60)
    relay_sweep_after_seconds: float = Field(
        default=5,
        ge=0,
        le=3600,
        description="the outbox sweep takes messages this old: younger ones are published "
        "right after their commit",
    )
    outbox_retention_seconds: float = Field(
        default=0,
        ge=0,
        le=MAX_RETENTION_SECONDS,
        description="SQL storage keeps a row for each sent outbox message this long, a "
        "record of what was published and when; 0: deleted as it is sent",
    )
    outbox_prune_interval_seconds: float = Field(default=60, gt=0, le=3600)
    task_retention_seconds: float | None = Field(
        default=None,
        gt=0,
        le=MAX_RETENTION_SECONDS,
        description="finished tasks are deleted once unchanged this long; default: kept",
    )
    cancel_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    progress_interval_seconds: float = Field(default=1, ge=0, le=3600)
    http_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="hosts the http kind may call: api.example.com,*.example.org",
    )
    http_allow_private_networks: bool = False
    http_max_response_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_schedules_per_owner: int = Field(default=1000, ge=1, le=1_000_000)
    callback_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Standard Webhooks secrets (whsec_...) that sign callback deliveries, "
        "comma-separated: each signs, so a new one can be added before the old is removed",
    )
    handler_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="modules with user task kinds: mod.a,mod.b"
    )
    redispatch_after_seconds: float = Field(default=900, gt=0, le=7 * 86400)
    recovery_interval_seconds: float = Field(default=15, gt=0, le=3600)
    shutdown_grace_seconds: float = Field(default=10, ge=0, le=3600)
    heartbeat_seconds: float = Field(
        default=5, gt=0, le=3600, description="how often a worker records that it is alive"
    )
    worker_lost_after_seconds: float | None = Field(
        default=None,
        gt=0,
        le=MAX_RETENTION_SECONDS,
        description="a worker silent this long is lost; default: 3 heartbeat intervals",
    )
    worker_prune_after_seconds: float = Field(
        default=3600,
        gt=0,
        le=MAX_RETENTION_SECONDS,
        description="a worker silent this long leaves the registry",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] | None = Field(
        default=None, description="default: text in local, json elsewhere"
    )
    metrics_port: int = Field(
        default=9100, ge=0, le=65535, description="a worker's /metrics port; 0 turns it off"
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="the address a worker's /metrics listens on: 0.0.0.0 for a scraper on "
        "another host (the metrics are not authenticated)",
    )
    stats_interval_seconds: float = Field(default=15, gt=0, le=3600)
    sentry_dsn: SecretStr | None = None
    sentry_traces_sample_rate: float = Field(default=0.0, ge=0, le=1)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: object) -> object:
        if isinstance(value, dict):  # {owner: key}, one key per owner
            return list(value.items())
        if not isinstance(value, str):
            return value
        pairs: list[tuple[str, str]] = []
        for item in filter(None, (part.strip() for part in value.split(","))):
            owner, sep, key = item.partition(":")
            if not sep or not owner.strip() or not key.strip():
                raise ValueError("TASKPORT_API_KEYS must look like owner:key,owner:key")
            pairs.append((owner.strip(), key.strip()))
        return pairs

    @field_validator("api_keys")
    @classmethod
    def _check_api_keys(cls, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        for owner, key in pairs:
            if len(owner) > MAX_OWNER_LENGTH:
                raise ValueError(
                    f"an owner name is at most {MAX_OWNER_LENGTH} "
                    f"characters, {owner[:20]!r}... has {len(owner)}"
                )
            # A header arrives as Latin-1 bytes: any other key would match no client.
            if not PRINTABLE_ASCII.fullmatch(key):
                raise ValueError(
                    f"the key of owner {owner!r} must be printable ASCII characters "
                    "(those of an 'Authorization: Bearer <key>' header)"
                )
        return pairs

    @field_validator("callback_secrets", mode="before")
    @classmethod
    def _parse_callback_secrets(cls, value: object) -> object:
        secrets = value.split(",") if isinstance(value, str) else value
        if not isinstance(secrets, list):
            return value
        parsed = [text for secret in secrets if (text := _secret_text(secret).strip())]
        for secret in parsed:
            if not webhook_secret_valid(secret):
                raise ValueError(
                    "TASKPORT_CALLBACK_SECRETS must be whsec_ followed by the base64 of 24 to "
                    "64 random bytes, comma-separated (taskport callback-secret makes one)"
                )
        return parsed

    @field_validator(
        "cors_origins",
        "handler_modules",
        "http_allowed_hosts",
        "queues",
        "worker_queues",
        mode="before",
    )
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _refuse_origins_no_browser_sends(cls, origins: list[str]) -> list[str]:
        """A browser's Origin header is scheme://host[:port], compared as it is: an origin
        without its scheme, or with a path (a trailing slash too), would match no page."""
        for origin in origins:
            parts = urlsplit(origin)
            if origin != "*" and not (
                parts.scheme in ("http", "https") and parts.netloc and origin.endswith(parts.netloc)
            ):
                raise ValueError(
                    f"an origin is scheme://host[:port] (or *), as a browser sends it: {origin!r}"
                )
        return origins

    @field_validator("http_allowed_hosts")
    @classmethod
    def _refuse_urls_as_hosts(cls, hosts: list[str]) -> list[str]:
        """A URL, a path or a port would match no host: every task would be refused as
        not allowed. An IPv6 address has several colons, a port one."""
        for host in hosts:
            if "/" in host or "@" in host or host.count(":") == 1:
                raise ValueError(
                    f"host names or patterns, not URLs or ports: {host!r} "
                    "(e.g. api.example.com,*.example.org)"
                )
        return hosts

    @field_validator("sentry_dsn", mode="before")
    @classmethod
    def _parse_sentry_dsn(cls, value: object) -> object:
        text = _secret_text(value).strip() if value is not None else ""
        if not text:
            return None  # empty, as a compose file passes an unset variable: off
        # Imported only when a DSN is set: a process without Sentry never loads it.
        from sentry_sdk.utils import BadDsn, Dsn

        try:
            Dsn(text)
        except BadDsn as exc:
            raise ValueError(
                f"not a Sentry DSN ({exc}): https://<public key>@<host>/<project id>"
            ) from None
        return text

    @field_validator("queues")
    @classmethod
    def _check_queue_names(cls, queues: list[str]) -> list[str]:
        for queue in queues:
            if problem := queue_name_problem(queue):
                raise ValueError(problem)
        return list(dict.fromkeys(queues))

    @field_validator("worker_queues")
    @classmethod
    def _check_worker_queue_entries(cls, entries: list[str]) -> list[str]:
        """``name`` or ``name:limit``, each queue once."""
        named: dict[str, str] = {}
        for entry in entries:
            queue, _, limit = entry.partition(":")
            queue = queue.strip()
            if problem := queue_name_problem(queue):
                raise ValueError(problem)
            if ":" in entry and not (limit.strip().isdigit() and int(limit) >= 1):
                raise ValueError(
                    f"a queue's limit is a whole number of tasks, 1 or more: {entry!r} "
                    "(e.g. images:4)"
                )
            if queue in named and named[queue] != entry:
                raise ValueError(f"queue {queue!r} is named twice, with different limits")
            named[queue] = entry
        return list(named.values())

    @model_validator(mode="after")
    def _check_worker_queues(self) -> Settings:
        if not 1 <= len(self.queues) <= MAX_QUEUES:
            raise ValueError(f"TASKPORT_QUEUES must name 1 to {MAX_QUEUES} queues")
        if unknown := [queue for queue in self.consumed_queues if queue not in self.queues]:
            raise ValueError(
                f"TASKPORT_WORKER_QUEUES names queues not in TASKPORT_QUEUES: {', '.join(unknown)}"
            )
        concurrency = self.worker_concurrency
        if over := [f"{q}:{n}" for q, n in self.queue_limits.items() if n > concurrency]:
            raise ValueError(
                f"a queue's limit is at most TASKPORT_WORKER_CONCURRENCY ({concurrency}): "
                f"{', '.join(over)}"
            )
        return self

    @property
    def consumed_queues(self) -> tuple[str, ...]:
        """The queues this process's worker takes."""
        if not self.worker_queues:
            return tuple(self.queues)
        return tuple(entry.partition(":")[0].strip() for entry in self.worker_queues)

    @property
    def queue_limits(self) -> dict[str, int]:
        """The most tasks of a queue this process's worker runs at once, for the queues
        given a limit (``images:4``); the others share ``worker_concurrency``."""
        limits = (entry.partition(":") for entry in self.worker_queues)
        return {queue.strip(): int(limit) for queue, colon, limit in limits if colon}

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if self.environment != "local":
            if self.secret_key.get_secret_value() == DEV_SECRET_KEY:
                raise ValueError(
                    "TASKPORT_SECRET_KEY must be set outside local "
                    f"(environment {self.environment})"
                )
            if not self.api_keys:
                raise ValueError(
                    f"TASKPORT_API_KEYS must be set outside local (environment {self.environment})"
                )
        if self.push_auth == "none" and self.environment != "local":
            raise ValueError(
                f"TASKPORT_PUSH_AUTH=none is refused outside local (environment {self.environment})"
            )
        if self.push_auth == "oidc" and not (self.push_audience and self.push_service_account):
            raise ValueError(
                "TASKPORT_PUSH_AUTH=oidc needs TASKPORT_PUSH_AUDIENCE and "
                "TASKPORT_PUSH_SERVICE_ACCOUNT"
            )
        if len({key for _, key in self.api_keys}) != len(set(self.api_keys)):
            raise ValueError("TASKPORT_API_KEYS gives the same key to two owners")
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ValueError("TASKPORT_RETRY_MAX_SECONDS must be >= TASKPORT_RETRY_BASE_SECONDS")
        if self.lost_after_seconds <= self.heartbeat_seconds:
            raise ValueError(
                "TASKPORT_WORKER_LOST_AFTER_SECONDS must be longer than TASKPORT_HEARTBEAT_SECONDS"
            )
        if self.in_process_broker and self.publish_events:
            raise ValueError(
                "TASKPORT_PUBLISH_EVENTS needs a broker other systems can subscribe to "
                "(amqp:// or pubsub://), not the in-process queue"
            )
        if self.in_process_broker and self.embedded_worker is False:
            raise ValueError(
                "the in-process queue (TASKPORT_BROKER_URL=memory://) needs the embedded worker"
            )
        return self

    @property
    def logs_as_json(self) -> bool:
        return (self.log_format or ("text" if self.environment == "local" else "json")) == "json"

    @property
    def lost_after_seconds(self) -> float:
        if self.worker_lost_after_seconds is None:
            return 3 * self.heartbeat_seconds
        return self.worker_lost_after_seconds

    @property
    def keeps_sent_messages(self) -> bool:
        return self.outbox_retention_seconds > 0

    @property
    def in_process_broker(self) -> bool:
        return url_scheme(self.broker_url) == "memory"

    @property
    def push_auth_mode(self) -> Literal["oidc", "none"]:
        if self.push_auth is None:
            return "none" if self.environment == "local" else "oidc"
        return self.push_auth

    @property
    def runs_embedded_worker(self) -> bool:
        if self.embedded_worker is None:
            return self.in_process_broker
        return self.embedded_worker

    @property
    def migrates_on_start(self) -> bool:
        if self.migrate_on_start is None:
            return url_scheme(self.storage_url) == "sqlite"
        return self.migrate_on_start

    def owners_by_key_digest(self) -> dict[str, str]:
        """API keys are looked up by their SHA-256, never compared as plain strings."""
        return {hashlib.sha256(key.encode()).hexdigest(): owner for owner, key in self.api_keys}
