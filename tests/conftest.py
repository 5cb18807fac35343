from __future__ import annotations

import os

from tests.databases import empty_postgres_url, postgres_server, postgres_url
from tests.mongo import mongo_refusing_logins, mongo_server, mongo_url

__all__ = [
    "empty_postgres_url",
    "mongo_refusing_logins",
    "mongo_server",
    "mongo_url",
    "postgres_server",
    "postgres_url",
]

# Tests never read the developer's environment by accident.
for name in list(os.environ):
    if name.startswith("TASKPORT_"):
        del os.environ[name]
# Tests run several workers on this one host: none serves /metrics unless a test asks.
os.environ["TASKPORT_METRICS_PORT"] = "0"
