"""Retention: `falbridge purge` over N old finished jobs in PostgreSQL, against one DELETE
of the same rows.

    python bench/purge.py [--jobs 1000000] [--batch 500]

Two databases in one durable PostgreSQL cluster get the same history, generated inside
PostgreSQL (INSERT ... SELECT over generate_series, as bench/history.py does): N finished
jobs 100 to 130 days old (80% completed, 15% failed, 5% cancelled) with a pending and a
terminal event each, one outgoing delivery with one attempt for the terminal event, one
callback in the inbox, and, for completed jobs, a result file and a stored file; plus N/10
recent or running jobs that must stay. Then VACUUM ANALYZE.

The purge is falbridge.worker.purge.purge(90 days) on the first database, batches of
`--batch` jobs, each its own transaction, stored objects deleted from a local backend
after each commit (the keys name no object: the backend's delete is an unlink of a
missing file, so the figure is the database's work plus one syscall per file). The
baseline, on the second: one transaction, `DELETE FROM webhook_deliveries` of those jobs
and one `DELETE FROM jobs` of the old finished jobs, the other tables going by ON DELETE
CASCADE: the fastest way to remove the same rows, holding every lock until it ends.

Prints one line:
    purge: jobs=N rate=…/s baseline=…/s ratio=… rows=… objects=… batches=… kept=… PASS|FAIL
ratio = purge time / baseline time: what short locks, per-batch commits and the stored
objects' deletes cost over the one statement. There is no rate target (the issue sets
none): PASS means both left exactly the same rows, every recent or running job kept.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import psycopg

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import QuietWatch, finish_line, log, main_wrapper, require_tools, wait_quiet
from falbridge import config
from falbridge.devstack.services import PostgresCluster
from falbridge.models.migrate import upgrade
from falbridge.models.purge import TABLES

AGE = timedelta(days=90)

JOB_ID = "('00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid"
OLD_FINISHED = "status IN ('completed', 'failed', 'cancelled') AND updated_at < now() - interval '90 days'"

GENERATE = [
    # The old finished jobs, then the ones that stay (recent, or running however old).
    f"""
INSERT INTO jobs (id, endpoint_id, input, status, request_id, result, error, error_type,
                  created_at, updated_at, touched_at, completed_at, event_seq, result_pending,
                  submit_attempts, poll_attempts, webhook_count)
SELECT {JOB_ID}, 'fal-ai/evf-sam',
       jsonb_build_object('prompt', 'object ' || g,
                          'image_url', 'https://v3.fal.media/files/in/' || g || '.png'),
       s.status, 'req-' || g,
       CASE WHEN s.status = 'completed' THEN jsonb_build_object('image', jsonb_build_object(
            'url', 'https://v3.fal.media/files/b/' || g || '/mask.png', 'content_type', 'image/png',
            'file_name', 'mask.png', 'file_size', 20000 + g %% 5000, 'width', 1024, 'height', 768)) END,
       CASE WHEN s.status = 'failed' THEN 'image_url: could not load the image' END,
       CASE WHEN s.status = 'failed' THEN 'image_load_error' END,
       t.at - interval '5 seconds', t.at, t.at, t.at, 2, false, 1, 0, 1
FROM generate_series(1, %(old)s + %(kept)s) AS g
CROSS JOIN LATERAL (SELECT CASE
    WHEN g > %(old)s AND g %% 2 = 0 THEN now() - interval '200 days'
    WHEN g > %(old)s THEN now() - (g %% 30) * interval '1 day'
    ELSE now() - interval '100 days' - (g %% 30) * interval '1 day' END AS at) t
CROSS JOIN LATERAL (SELECT CASE
    WHEN g > %(old)s AND g %% 2 = 0 THEN 'in_progress'
    WHEN abs(hashint4(g)) %% 100 < 80 THEN 'completed'
    WHEN abs(hashint4(g)) %% 100 < 95 THEN 'failed'
    ELSE 'cancelled' END AS status) s
""",
    """
INSERT INTO job_events (job_id, seq, at, source, from_status, to_status)
SELECT id, n, updated_at, 'webhook', CASE WHEN n = 2 THEN 'pending' END,
       CASE WHEN n = 1 THEN 'pending' ELSE status END
FROM jobs CROSS JOIN generate_series(1, 2) AS n
""",
    """
INSERT INTO event_deliveries (event_id, target, status, attempts, created_at, delivered_at)
SELECT id, 'notify_url', 'delivered', 1, at, at FROM job_events WHERE seq = 2
""",
    """
INSERT INTO delivery_attempts (delivery_id, at, status_code, latency_ms)
SELECT id, delivered_at, 200, 12 FROM event_deliveries
""",
    """
INSERT INTO result_files (job_id, path, url, content_type, file_name, file_size, width, height)
SELECT id, 'image', result->'image'->>'url', 'image/png', 'mask.png', 20000, 1024, 768
FROM jobs WHERE status = 'completed'
""",
    """
INSERT INTO stored_files (job_id, path, fal_url, file_name, status, attempts, served_type,
                          sniffed_type, sha256, size, width, height, storage_key, stored_at)
SELECT id, 'image', result->'image'->>'url', 'mask.png', 'stored', 1, 'image/png', 'image/png',
       md5(id::text) || md5(id::text), 20000, 1024, 768, 'jobs/' || id || '/image-0000-mask.png', updated_at
FROM jobs WHERE status = 'completed'
""",
    """
INSERT INTO webhook_deliveries (received_at, request_id, job_id, body, body_sha256, body_length,
                                headers, verified, redeliveries, processed_at, outcome)
SELECT updated_at, request_id, id,
       convert_to('{"status": "OK", "request_id": "' || request_id || '"}', 'UTF8'),
       md5(request_id) || md5(request_id), 64, '{}'::jsonb, true, 0, updated_at, 'applied'
FROM jobs
""",
]

BASELINE = [
    f"DELETE FROM webhook_deliveries WHERE job_id IN (SELECT id FROM jobs WHERE {OLD_FINISHED})",
    f"DELETE FROM jobs WHERE {OLD_FINISHED}",
]


def run(jobs: int = 1_000_000, batch: int = 500, wait_quiet_s: float = 0.0) -> tuple[str, bool]:
    quiet = wait_quiet(wait_quiet_s)
    watch = QuietWatch()
    cluster = PostgresCluster(require_tools(wrk=False), durable=True)
    cluster.start()
    try:
        kept = max(jobs // 10, 1)
        urls = [cluster.create_database(name) for name in ("falbridge_purge", "falbridge_purge_baseline")]
        for url in urls:
            upgrade(url)
            seconds = _generate(url, jobs, kept)
            log(f"purge: {jobs} old + {kept} kept jobs generated in {seconds:.1f}s")
        before = _rows(urls[0])
        purge_s, report = _purge(urls[0], batch)
        baseline_s = _baseline(urls[1])
        after, after_baseline = _rows(urls[0]), _rows(urls[1])
        ok = after == after_baseline and after["jobs"] == kept and report.jobs == jobs
        removed = sum(before.values()) - sum(after.values())
        line = (
            f"purge: jobs={jobs} rate={jobs / purge_s:.0f}/s ({purge_s:.1f}s) "
            f"baseline={jobs / baseline_s:.0f}/s ({baseline_s:.1f}s) ratio={purge_s / baseline_s:.2f} "
            f"rows={removed} objects={report.files_deleted} batches={report.batches} batch={batch} "
            f"kept={after['jobs']}/{kept} " + ("PASS" if ok else "FAIL")
        )
        return finish_line(line, quiet, watch), ok
    finally:
        cluster.stop()


def _raw(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _generate(url: str, old: int, kept: int) -> float:
    started = time.monotonic()
    with psycopg.connect(_raw(url), autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '256MB'")
        for statement in GENERATE:
            conn.execute(statement, {"old": old, "kept": kept} if "%(" in statement else None)
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
    return time.monotonic() - started


def _rows(url: str) -> dict[str, int]:
    with psycopg.connect(_raw(url), autocommit=True) as conn:
        return {name: conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in TABLES}


def _purge(url: str, batch: int):
    os.environ["DATABASE_URL"] = url
    config.use(None)
    from falbridge.worker.purge import purge  # after DATABASE_URL: it reads the configuration
    from falbridge.worker.storage.backend import open_backend

    backend = open_backend(f"file://{tempfile.mkdtemp(prefix='falbridge-purge-bench-')}")
    started = time.monotonic()
    report = purge(AGE, batch_size=batch, backend=backend)
    seconds = time.monotonic() - started
    log(f"purge: {report.line()}")
    return seconds, report


def _baseline(url: str) -> float:
    with psycopg.connect(_raw(url)) as conn:
        started = time.monotonic()
        with conn.transaction():
            for statement in BASELINE:
                conn.execute(statement)
        seconds = time.monotonic() - started
    log(f"purge: baseline (one transaction, {len(BASELINE)} statements, cascades) {seconds:.2f}s")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="old finished jobs to purge")
    parser.add_argument("--batch", type=int, default=500, help="jobs per purge transaction")
    parser.add_argument("--wait-quiet", type=float, default=0.0)
    args = parser.parse_args(argv)
    return main_wrapper("purge", lambda: run(args.jobs, args.batch, wait_quiet_s=args.wait_quiet))


if __name__ == "__main__":
    sys.exit(main())
