"""Sends N no-op tasks to a baseline's workers, as its client library does; prints JSON.

python -m bench.baselines.produce celery|dramatiq N
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    system, count = sys.argv[1], int(sys.argv[2])
    started_at = time.time()
    started = time.perf_counter()
    if system == "celery":
        from bench.baselines.celery_app import noop as celery_noop

        for index in range(count):
            celery_noop.delay({"n": index})
    elif system == "dramatiq":
        from bench.baselines.dramatiq_app import broker
        from bench.baselines.dramatiq_app import noop as dramatiq_noop

        for index in range(count):
            dramatiq_noop.send({"n": index})
        broker.close()
    else:
        raise SystemExit(f"unknown system {system!r}")
    elapsed = time.perf_counter() - started
    print(json.dumps({"tasks": count, "seconds": elapsed, "started_at": started_at}))


if __name__ == "__main__":
    main()
