"""The figures a run reports, their ratios to the baselines, the targets, and the table."""

from __future__ import annotations

from typing import Any


def rows_label(rows: int) -> str:
    """1000 -> rows_1k, 1000000 -> rows_1m."""
    if rows >= 1_000_000 and rows % 1_000_000 == 0:
        return f"rows_{rows // 1_000_000}m"
    if rows >= 1_000 and rows % 1_000 == 0:
        return f"rows_{rows // 1_000}k"
    return f"rows_{rows}"


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A scenario's figures over its rounds: the run of median throughput, with every
    round's throughput in ``rounds``; per system for the submit scenario."""
    if len(runs) == 1:
        return runs[0]
    key = next((key for key in ("tps", "rps") if key in runs[0]), None)
    if key is None:  # the submit scenario: a run per system in each round
        return {system: median_run([run[system] for run in runs]) for system in runs[0]}
    ordered = sorted(runs, key=lambda run: float(run[key]))
    return {**ordered[len(ordered) // 2], "rounds": [round(run[key], 1) for run in runs]}


def _get(measured: dict[str, Any], *path: str) -> float | None:
    value: Any = measured
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return round(float(value), 2)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


def summary(measured: dict[str, Any], counts: Any) -> dict[str, Any]:
    submit_rps = {
        name: _get(measured, "submit", name, "rps")
        for name in ("taskport", "fastapi_insert", "fastapi_celery")
    }
    e2e_tps = {
        name: _get(measured, f"e2e_{name}", "tps")
        for name in (
            "taskport_pg_rabbitmq", "celery", "dramatiq",
            "taskport_sqlite", "taskport_mongo", "taskport_pubsub",
        )
    }  # fmt: skip
    e2e_tps[f"taskport_backlog_{rows_label(counts.backlog)[5:]}"] = _get(measured, "backlog", "tps")
    latency_ms = {key: _get(measured, "latency", f"{key}_ms") for key in ("p50", "p99", "max")}
    worker_rss_mb = {
        "idle": _get(measured, "e2e_taskport_pg_rabbitmq", "idle_rss_mb"),
        "busy": _get(measured, "e2e_taskport_pg_rabbitmq", "busy_rss_mb"),
    }
    small, large = (rows_label(rows) for rows in counts.list_rows)
    list_ms = {label: _get(measured, "list", label, "walk_p50_ms") for label in (small, large)}
    ratios = {
        "submit_vs_fastapi_insert": _ratio(submit_rps["taskport"], submit_rps["fastapi_insert"]),
        "submit_vs_fastapi_celery": _ratio(submit_rps["taskport"], submit_rps["fastapi_celery"]),
        "e2e_vs_dramatiq": _ratio(e2e_tps["taskport_pg_rabbitmq"], e2e_tps["dramatiq"]),
        "e2e_vs_celery": _ratio(e2e_tps["taskport_pg_rabbitmq"], e2e_tps["celery"]),
        f"list_{large}_vs_{small}": _ratio(list_ms[large], list_ms[small]),
    }
    targets = [
        ("submit ≥ 1.0× FastAPI+INSERT", ratios["submit_vs_fastapi_insert"], ">=", 1.0),
        ("submit ≥ 2× FastAPI+Celery", ratios["submit_vs_fastapi_celery"], ">=", 2.0),
        ("end to end ≥ 2× Dramatiq", ratios["e2e_vs_dramatiq"], ">=", 2.0),
        ("end to end ≥ 10× Celery", ratios["e2e_vs_celery"], ">=", 10.0),
        ("embedded SQLite ≥ 1,000 tasks/s", e2e_tps["taskport_sqlite"], ">=", 1000),
        ("submit → start p50 ≤ 5 ms", latency_ms["p50"], "<=", 5),
        ("submit → start p99 ≤ 50 ms", latency_ms["p99"], "<=", 50),
        ("worker RSS < 100 MB (busy)", worker_rss_mb["busy"], "<", 100),
        (f"list page at {large[5:]} ≤ 2× at {small[5:]}", ratios[f"list_{large}_vs_{small}"],
         "<=", 2.0),
    ]  # fmt: skip
    return {
        "submit_rps": submit_rps,
        "e2e_tps": e2e_tps,
        "latency_ms": latency_ms,
        "worker_rss_mb": worker_rss_mb,
        "list_ms": list_ms,
        "ratios": ratios,
        "targets": [
            {"target": name, "value": value, "met": _met(value, operator, bound)}
            for name, value, operator, bound in targets
        ],
    }


def _met(value: float | None, operator: str, bound: float) -> bool | None:
    if value is None:
        return None
    return {">=": value >= bound, "<=": value <= bound, "<": value < bound}[operator]


def _figure(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    decimals = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    text = f"{value:,.{decimals}f}"
    return f"{text}{unit}"


_ROUNDS = {
    ("submit", "taskport"): "submit: Taskport",
    ("submit", "fastapi_insert"): "FastAPI + INSERT",
    ("submit", "fastapi_celery"): "FastAPI + Celery",
    ("e2e_taskport_pg_rabbitmq",): "end to end: Taskport",
    ("e2e_dramatiq",): "Dramatiq",
    ("e2e_celery",): "Celery",
}


def _rounds(measured: dict[str, Any]) -> list[str]:
    """The line under the table giving every round's figure of the compared systems."""
    named, count = [], 0
    for path, label in _ROUNDS.items():
        figures: Any = measured
        for key in path:
            figures = figures.get(key, {}) if isinstance(figures, dict) else {}
        if figures.get("rounds"):
            count = len(figures["rounds"])
            named.append(f"{label} {' / '.join(_figure(value) for value in figures['rounds'])}")
    if not named:
        return []
    return [
        "",
        f"Submit and end-to-end figures are the median of {count} runs of each system, taking "
        f"turns (in order: {'; '.join(named)}).",
    ]


def markdown(results: dict[str, Any]) -> str:
    submit, e2e = results["submit_rps"], results["e2e_tps"]
    ratios = results["ratios"]
    machine = results["machine"]
    lines = [
        f"# Taskport benchmarks — {results['date'][:10]} ({results['mode']} run)",
        "",
        f"{machine['cpus']} CPUs, {machine['memory_gib']} GiB, Python {machine['python']}; "
        f"PostgreSQL and RabbitMQ on the same machine; every system measured in this run. "
        f"Run took {results['duration_seconds']:.0f} s. Counts: "
        + ", ".join(f"{key} {value}" for key, value in results["counts"].items())
        + ".",
        "",
        "| scenario | Taskport | baseline | ratio |",
        "|---|---:|---:|---:|",
        f"| submit, req/s (32 connections) | {_figure(submit['taskport'])} "
        f"| FastAPI + INSERT {_figure(submit['fastapi_insert'])} "
        f"| {_figure(ratios['submit_vs_fastapi_insert'], '×')} |",
        f"| | | FastAPI + Celery `.delay()` {_figure(submit['fastapi_celery'])} "
        f"| {_figure(ratios['submit_vs_fastapi_celery'], '×')} |",
        f"| end to end, tasks/s (PostgreSQL + RabbitMQ, 2 workers) "
        f"| {_figure(e2e['taskport_pg_rabbitmq'])} "
        f"| Dramatiq {_figure(e2e['dramatiq'])} | {_figure(ratios['e2e_vs_dramatiq'], '×')} |",
        f"| | | Celery {_figure(e2e['celery'])} | {_figure(ratios['e2e_vs_celery'], '×')} |",
    ]
    for key, label in (
        ("taskport_sqlite", "embedded default (SQLite, in-process queue)"),
        ("taskport_mongo", "MongoDB (nx-27017) + RabbitMQ, 2 workers"),
        ("taskport_pubsub", "PostgreSQL + Pub/Sub (emulator), 2 workers"),
    ):
        lines.append(f"| end to end, tasks/s, {label} | {_figure(e2e[key])} | | |")
    backlog = next(key for key in e2e if key.startswith("taskport_backlog_"))
    lines.append(
        f"| end to end, tasks/s, PostgreSQL + RabbitMQ, {backlog.rsplit('_', 1)[1]} tasks "
        f"already queued | {_figure(e2e[backlog])} | | |"
    )
    latency = results["latency_ms"]
    lines.append(
        f"| submit → handler start, ms (p50 / p99 / max) | {_figure(latency['p50'])} / "
        f"{_figure(latency['p99'])} / {_figure(latency['max'])} | | |"
    )
    rss = results["worker_rss_mb"]
    lines.append(
        f"| worker RSS, MB (idle / busy) | {_figure(rss['idle'])} / {_figure(rss['busy'])} | | |"
    )
    for label, value in results["list_ms"].items():
        lines.append(
            f"| list page of 50, ms (p50), {label[5:]} tasks stored | {_figure(value)} | | |"
        )
    lines += _rounds(results["measured"])
    lines += ["", "| target | measured | met |", "|---|---:|---|"]
    for target in results["targets"]:
        met = {True: "yes", False: "**no**", None: "not measured"}[target["met"]]
        lines.append(f"| {target['target']} | {_figure(target['value'])} | {met} |")
    if results["failed"]:
        lines += ["", "Failed scenarios:", ""]
        lines += [f"- {name}: {error.splitlines()[0]}" for name, error in results["failed"].items()]
    return "\n".join(lines) + "\n"
