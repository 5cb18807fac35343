"""``python -m tests.pubsub_emulator --port 8085``: serve the emulator until interrupted."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from tests.pubsub_emulator.server import PubSubEmulator


def main() -> None:
    parser = argparse.ArgumentParser(description="An in-memory Pub/Sub emulator for Taskport")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8085)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    emulator = PubSubEmulator(arguments.host, arguments.port).start()
    print(f"Pub/Sub emulator listening on {emulator.host}", flush=True)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    stopping.wait()
    emulator.stop()


if __name__ == "__main__":
    main()
