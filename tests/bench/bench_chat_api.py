"""Latency and throughput of ``POST /api/chat`` through a real ``jsug-bot serve`` process.

Run from the repository root::

    .venv/bin/python tests/bench/bench_chat_api.py                      # SQLite (a fresh demo file)
    .venv/bin/python tests/bench/bench_chat_api.py --postgres URL       # ... and PostgreSQL

A report, not a test. For each database it migrates and seeds a fresh database, starts one server
process (``--workers``, default 1) with the rate limit off, and measures from this process over
keep-alive HTTP connections:
- baseline: ``GET /healthz`` (framework, HTTP and one ``SELECT 1``), the floor any route pays;
- chat: FAQ questions from ``tests/data/holdout_questions.jsonl`` (in scope), each in a new session
  (a conversation row, the member's message and the replies written in one transaction), one
  client at a time (latency p50/p99) and then ``--clients`` at once (requests per second).
The client shares the machine's cores with the server, so the throughput is a lower bound.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
JSUG_BOT = str(Path(sys.executable).with_name("jsug-bot"))


def questions() -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "tests/data/holdout_questions.jsonl").read_text("utf-8").splitlines()]
    return [row["query"] for row in rows if row["expected"]]


def start(database: str, port: int, workers: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JSUG_")}
    env.update(DATABASE_URL=database, JSUG_WEB__RATE_LIMIT_PER_MINUTE="0", JSUG_WEB__SESSION_RATE_LIMIT_PER_MINUTE="0",
               JSUG_SECRET_KEY="bench-" + "x" * 40, JSUG_WEB__DELIVER_MAIL="false")
    for command in (["db", "upgrade"], ["db", "seed-demo"]):
        subprocess.run([JSUG_BOT, *command], env=env, check=True, capture_output=True)
    process = subprocess.Popen([JSUG_BOT, "serve", "--port", str(port), "--workers", str(workers)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start")


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2), "n": len(ordered)}


def sequential(client: httpx.Client, send: list[tuple[str, str, dict[str, object] | None]]) -> list[float]:
    times = []
    for method, path, body in send:
        started = time.perf_counter()
        response = client.request(method, path, json=body)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return times


def concurrent(base: str, send: list[tuple[str, str, dict[str, object] | None]], clients: int) -> float:
    chunks = [send[i::clients] for i in range(clients)]

    def run(chunk: list[tuple[str, str, dict[str, object] | None]]) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            sequential(client, chunk)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, chunks))
    return len(send) / (time.perf_counter() - started)


def measure(label: str, database: str, port: int, args: argparse.Namespace) -> dict[str, object]:
    process = start(database, port, args.workers)
    base = f"http://127.0.0.1:{port}"
    chats = [("POST", "/api/chat", {"session_id": None, "text": q}) for q in questions()]
    chats = (chats * (args.requests // len(chats) + 1))[: args.requests]
    health = [("GET", "/healthz", None)] * args.requests
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            sequential(client, chats[:30] + health[:30])  # warm-up
            report = {
                "database": label, "workers": args.workers,
                "baseline_healthz": percentiles(sequential(client, health)),
                "chat": percentiles(sequential(client, chats)),
            }
        report["baseline_healthz_rps"] = round(concurrent(base, health, args.clients), 1)
        report["chat_rps"] = round(concurrent(base, chats, args.clients), 1)
        report["clients"] = args.clients
        return report
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="also measure on this PostgreSQL URL (its public schema is reset)")
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--port", type=int, default=8731)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print(json.dumps(measure("sqlite", f"sqlite:///{folder}/bench.sqlite3", args.port, args), ensure_ascii=False))
    if args.postgres:
        from sqlalchemy import create_engine, text

        engine = create_engine(args.postgres)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        print(json.dumps(measure("postgresql", args.postgres, args.port + 1, args), ensure_ascii=False))


if __name__ == "__main__":
    main()
