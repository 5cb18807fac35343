"""An in-memory Pub/Sub emulator for tests: ``PubSubEmulator().start()``, or
``python -m tests.pubsub_emulator --port 8085``."""

from tests.pubsub_emulator.server import PubSubEmulator

__all__ = ["PubSubEmulator"]
