"""Outgoing webhooks: events per second delivered to a local subscriber by falbridge's
deliver task, against the same subscriber fed the same bodies by a bare HTTP client.

    python bench/outgoing.py [--events 2000] [--concurrency 4] [--warmup 200]

Processes, each its own: PostgreSQL (durable), redis-server, the subscriber
(bench/chaos_subscriber.py without faults: a ThreadingHTTPServer that checks every
signature with `standardwebhooks` and answers 204), and a worker (`falbridge worker
--concurrency N`, prefork). The subscription is made through worker.notify.manage (the
product's path, as a user would), subscribed to every event; loopback is allowed
(FALBRIDGE_NOTIFY_ALLOWED_NETWORKS=127.0.0.0/8).

The events are completed jobs' terminal events, written in bulk with their deliveries
(one per event, pending): a job with a result and one result file, so each body is what
a subscriber gets for a finished job (~1.5 KB). The deliveries' `deliver_event` tasks
are queued while the worker is told not to consume, then it consumes: each task claims
its delivery, builds and signs the body, checks the address, POSTs it on a new
connection, records the attempt and the outcome, as in production. Rate = events /
(last `delivered_at` - the moment it may consume).

The baseline, in the same session, to the same subscriber: the same bodies (built by
worker.notify.payload and signed by worker.notify.sign in this process, before the
clock starts), POSTed by httpx from N threads, each with its own keep-alive client.

Prints one line:
    outgoing: events=…/s (…) bare=…/s (…) ratio=… delivered=N/N bad_signatures=0 PASS|FAIL
There is no rate target (the issue sets none): PASS means every event was delivered,
once each in both phases, with every signature good.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import text

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.chaos_subscriber import subscribe
from bench.common import (
    BenchStack,
    Profiler,
    QuietWatch,
    cpu_delta,
    finish_line,
    free_port,
    log,
    main_wrapper,
    run_dir_for,
    set_consuming,
    wait_http,
    wait_quiet,
)
from falbridge.models.db import get_engine, transaction
from falbridge.models.event_message import event_of_job
from falbridge.worker.celery_app import celery_app
from falbridge.worker.notify import payload, sign

DELIVER_TASK = "falbridge.deliver_event"  # worker/tasks.py's deliver_event
QUEUE = "falbridge"


def run(
    events: int = 2000,
    concurrency: int = 4,
    warmup: int = 200,
    wait_quiet_s: float = 0.0,
) -> tuple[str, bool]:
    quiet = wait_quiet(wait_quiet_s)
    watch = QuietWatch()
    run_dir = run_dir_for("outgoing")
    stack = BenchStack(run_dir)
    try:
        stack.start_services("falbridge_outgoing", wrk=False)
        stack.set_env({"FALBRIDGE_NOTIFY_ALLOWED_NETWORKS": "127.0.0.0/8"})
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        url = f"{base}/hooks/falbridge"
        made = subscribe(stack.env, url, ["job.status_changed"], description="outgoing bench")
        secret = made["secret"]
        script = str(Path(__file__).with_name("chaos_subscriber.py"))
        subscriber = stack.spawn(
            "subscriber", [sys.executable, script, "--port", str(port), "--secret", secret]
        )
        wait_http(f"{base}/_stats", subscriber)
        engine = get_engine(stack.database_url)
        warm_ids = _insert_events(engine, made["id"], warmup, "warm")
        main_ids = _insert_events(engine, made["id"], events, "main")
        log(f"outgoing: {warmup} + {events} events written, each with its delivery")

        # -- baseline: httpx posting the same bodies, signed the same way ------------------
        warm_requests = _requests(engine, warm_ids, secret)
        main_requests = _requests(engine, main_ids, secret)
        _post_all(url, warm_requests, concurrency)
        before = _stats(base)
        bare_s = _post_all(url, main_requests, concurrency)
        bare_stats = _stats(base)
        bare_received = bare_stats["received"] - before["received"]
        bare_rate = events / bare_s if bare_s else 0.0
        log(f"outgoing: bare httpx {bare_rate:.0f}/s ({events} in {bare_s:.2f}s, {concurrency} threads)")

        # -- falbridge's deliver task -------------------------------------------------------
        worker = stack.start_worker(concurrency=concurrency)
        warm_s = _deliver_all(stack, engine, warm_ids, timeout_s=300)
        log(f"outgoing: warm-up delivered {warmup} in {warm_s:.1f}s")
        before = _stats(base)
        cpu0 = stack.cpu()
        profiler = Profiler(run_dir, [worker, subscriber])
        try:
            deliver_s = _deliver_all(stack, engine, main_ids, timeout_s=max(300.0, events / 5))
        finally:
            profiler.stop()
        cpu_ms = cpu_delta(cpu0, stack.cpu(), events)
        after = _stats(base)
        delivered = _count_delivered(engine, main_ids)
        received = after["received"] - before["received"]
        rate = delivered / deliver_s if deliver_s else 0.0
        ratio = rate / bare_rate if bare_rate else 0.0
        attempts = _attempts(engine, main_ids)

        problems = []
        if delivered != events:
            problems.append(f"falbridge delivered {delivered}/{events}")
        if received != events:
            problems.append(
                f"the subscriber accepted {received} of falbridge's {events} (once each expected)"
            )
        if bare_received != events:
            problems.append(f"the subscriber accepted {bare_received} of the bare client's {events}")
        if attempts != events:
            problems.append(f"{attempts} attempts for {events} events (no failure expected)")
        if after["bad_signatures"]:
            problems.append(f"{after['bad_signatures']} bad signatures")
        ok = not problems
        details: dict[str, Any] = {
            "events": events,
            "concurrency": concurrency,
            "machine": quiet,
            "falbridge": {"seconds": deliver_s, "per_s": rate, "delivered": delivered, "attempts": attempts},
            "bare": {"seconds": bare_s, "per_s": bare_rate, "received": bare_received},
            "subscriber": after,
            "cpu_ms_per_event": cpu_ms,
            "subscription_made_by": made["made_by"],
            "problems": problems,
        }
        (run_dir / "outgoing.json").write_text(json.dumps(details, indent=2, default=str))
        log(f"outgoing: CPU ms per event: {cpu_ms}")
        for problem in problems:
            log(f"outgoing: PROBLEM: {problem}")
        log(f"outgoing: details in {run_dir}")
        line = (
            f"outgoing: events={rate:.0f}/s ({delivered} in {deliver_s:.1f}s, deliver_event on a prefork "
            f"worker, concurrency {concurrency}) bare={bare_rate:.0f}/s (httpx, {concurrency} threads, "
            f"keep-alive) ratio={ratio:.2f} delivered={delivered}/{events} "
            f"bad_signatures={after['bad_signatures']} no target {'PASS' if ok else 'FAIL'}"
        )
        return finish_line(line, quiet, watch), ok
    finally:
        stack.stop()


def _insert_events(engine, subscription_id: str, count: int, tag: str) -> list[int]:
    """`count` completed jobs (a result with one file, its file row, the pending and the
    completed event) and one pending delivery per completed event, left for the benchmark
    to dispatch (`redrive_after` an hour ahead: no sweeper runs here anyway). Returns the
    deliveries' ids."""
    statements = [
        """
        CREATE TEMP TABLE bench_jobs ON COMMIT DROP AS
        SELECT gen_random_uuid() AS id, g
        FROM generate_series(1, :n) AS g""",
        """
        INSERT INTO jobs (id, endpoint_id, input, status, request_id, gateway_request_id, result,
                          result_pending, metadata, created_at, updated_at, touched_at, submitted_at,
                          completed_at, submit_attempts, poll_attempts, webhook_count, event_seq)
        SELECT id, 'fal-ai/evf-sam',
               jsonb_build_object('prompt', 'object ' || g, 'image_url', 'https://example.com/cat.png'),
               'completed', :tag || '-' || g, :tag || '-' || g,
               jsonb_build_object('image', jsonb_build_object(
                   'url', 'https://v3.fal.media/files/bench/' || :tag || '-' || g || '/mask.png',
                   'content_type', 'image/png', 'file_name', 'mask.png', 'file_size', 20000 + g,
                   'width', 1024, 'height', 768)),
               false, jsonb_build_object('bench', :tag, 'index', g),
               now(), now(), now(), now(), now(), 1, 0, 1, 2
        FROM bench_jobs""",
        """
        INSERT INTO result_files (job_id, path, url, content_type, file_name, file_size, width, height)
        SELECT id, 'image', 'https://v3.fal.media/files/bench/' || :tag || '-' || g || '/mask.png',
               'image/png', 'mask.png', 20000 + g, 1024, 768
        FROM bench_jobs""",
        """
        INSERT INTO job_events (job_id, seq, at, source, from_status, to_status)
        SELECT id, 1, now(), 'api', NULL, 'pending' FROM bench_jobs
        UNION ALL
        SELECT id, 2, now(), 'webhook', 'submitted', 'completed' FROM bench_jobs""",
    ]
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement), {"n": count, "tag": f"bench-{tag}"})
        rows = conn.execute(
            text("""
                INSERT INTO event_deliveries (event_id, subscription_id, status, attempts,
                                              next_attempt_at, redrive_after, created_at)
                SELECT e.id, :subscription, 'pending', 0, now(), now() + interval '1 hour', now()
                FROM job_events e JOIN bench_jobs b ON b.id = e.job_id
                WHERE e.to_status = 'completed'
                ORDER BY b.g
                RETURNING id"""),
            {"subscription": subscription_id},
        ).all()
    return [row.id for row in rows]


def _requests(engine, delivery_ids: list[int], secret: str) -> list[tuple[bytes, dict[str, str]]]:
    """Each delivery's body and headers as the deliver task makes them (payload.body,
    sign.headers), made before the bare client's clock starts."""
    out = []
    with transaction(engine) as s:
        rows = s.execute(
            text("SELECT id, event_id FROM event_deliveries WHERE id = ANY(:ids) ORDER BY id"),
            {"ids": delivery_ids},
        ).all()
        now = int(time.time())
        for row in rows:
            found = event_of_job(s, row.event_id)
            assert found is not None, f"event {row.event_id} is gone"
            body = payload.body(s, found)
            out.append((body, sign.headers(payload.message_id(row.event_id), now, body, [secret])))
    return out


def _post_all(url: str, requests: list[tuple[bytes, dict[str, str]]], threads: int) -> float:
    """POST every request once from `threads` threads (a keep-alive httpx.Client each);
    seconds from the first request to the last answer."""
    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()
    failures: list[str] = []

    def post(request: tuple[bytes, dict[str, str]]) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=15.0)
            with lock:
                clients.append(client)
        body, headers = request
        response = client.post(url, content=body, headers=headers)
        if not response.is_success:
            failures.append(f"HTTP {response.status_code}")

    try:
        with ThreadPoolExecutor(threads, thread_name_prefix="bare") as pool:
            t0 = time.monotonic()
            list(pool.map(post, requests))
            elapsed = time.monotonic() - t0
    finally:
        for client in clients:
            client.close()
    if failures:
        raise RuntimeError(f"bare client: {len(failures)} failed posts, e.g. {failures[0]}")
    return elapsed


def _deliver_all(stack: BenchStack, engine, delivery_ids: list[int], timeout_s: float) -> float:
    """Queue a deliver_event task per delivery while the worker is told not to consume,
    then let it consume; seconds from then to the last `delivered_at`."""
    celery_app.conf.broker_url = stack.redis_url
    set_consuming(celery_app, QUEUE, on=False)
    with celery_app.producer_or_acquire() as producer:
        for delivery_id in delivery_ids:
            celery_app.send_task(DELIVER_TASK, args=[delivery_id], producer=producer)
    start_wall = time.time()
    set_consuming(celery_app, QUEUE, on=True)
    deadline = time.monotonic() + timeout_s
    while _count_delivered(engine, delivery_ids) < len(delivery_ids) and time.monotonic() < deadline:
        time.sleep(0.1)
    client = redis.Redis.from_url(stack.redis_url)
    try:  # nothing left behind for the next phase
        while (client.llen(QUEUE) or client.hlen("unacked")) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.close()
    with engine.connect() as conn:
        last = conn.execute(
            text("SELECT extract(epoch FROM max(delivered_at)) FROM event_deliveries WHERE id = ANY(:ids)"),
            {"ids": delivery_ids},
        ).scalar()
    return float(last) - start_wall if last is not None else float("inf")


def _count_delivered(engine, delivery_ids: list[int]) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM event_deliveries WHERE id = ANY(:ids) AND status = 'delivered'"),
                {"ids": delivery_ids},
            ).scalar()
            or 0
        )


def _attempts(engine, delivery_ids: list[int]) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM delivery_attempts WHERE delivery_id = ANY(:ids)"),
                {"ids": delivery_ids},
            ).scalar()
            or 0
        )


def _stats(base: str) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{base}/_stats", timeout=10).json()
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4, help="worker processes; bare client threads")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--wait-quiet", type=float, default=0.0)
    args = parser.parse_args(argv)
    return main_wrapper(
        "outgoing",
        lambda: run(args.events, args.concurrency, args.warmup, wait_quiet_s=args.wait_quiet),
    )


if __name__ == "__main__":
    sys.exit(main())
