"""History query: `GET /api/jobs` over 1,000,000 jobs in PostgreSQL, each filter, the
first page and a page 10,000 rows deep, against the raw SQL of the same query.

    python bench/history.py [--rows 1000000] [--seconds 2]

The jobs are generated inside PostgreSQL (one INSERT ... SELECT over generate_series; a
realistic mix of endpoints, statuses, external ids, inputs and results over 30 days),
then VACUUM ANALYZE and a checkpoint. The API is `falbridge serve` (gunicorn). The raw
SQL is the statement the API runs, captured from falbridge.models.jobs.list_jobs with the
same filters and cursor, run with psycopg on one connection, rows fetched. One loop
requests every URL, runs every raw statement and requests GET /healthz (the HTTP stack
with no database: what bounds the ratio) in turn, so all of them see the same machine.
EXPLAIN (ANALYZE, BUFFERS) of each must show an index scan on the matching index, no sort
and no sequential scan.

Prints one line:
    history: rows=… api p99=… sql p99=… ratio<=… deep/first<=… indexes=k/n target … PASS|FAIL
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlencode

import psycopg
from sqlalchemy import event

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    API_HEADERS,
    BenchStack,
    QuietWatch,
    finish_line,
    fmt_ms,
    free_port,
    log,
    main_wrapper,
    run_dir_for,
    wait_quiet,
)
from falbridge.models.db import get_engine, transaction
from falbridge.models.listing import JobFilters, encode_cursor, list_jobs

TARGET_RATIO = 2.0  # API p99 within 2x of the raw SQL's
DEEP_TOLERANCE = 1.15  # "no slower than the first": deep p50 within 15% of the first page's (noise)
DEEP = 10_000
PAGE = 50
SPAN = timedelta(days=30)

# Endpoint by bucket of 20 (45% / 40% / 10% / 5%), status by bucket of 100.
GENERATE = """
INSERT INTO jobs (id, endpoint_id, input, status, external_id, metadata, request_id,
                  gateway_request_id, status_url, response_url, cancel_url, result,
                  result_pending, error, error_type, error_detail, created_at, updated_at,
                  touched_at, submitted_at, completed_at, submit_attempts, poll_attempts, webhook_count)
SELECT gen_random_uuid(), e.endpoint,
       jsonb_build_object('prompt', 'object ' || g, 'image_url', 'https://example.com/in/' || g || '.png'),
       s.status,
       CASE WHEN g %% 10 < 6 THEN 'order-' || g END,
       CASE WHEN g %% 10 < 3 THEN jsonb_build_object('customer', g %% 1000, 'batch', g / 1000) END,
       CASE WHEN s.status <> 'pending' THEN 'req-' || g END,
       CASE WHEN s.status <> 'pending' THEN 'req-' || g END,
       CASE WHEN s.status <> 'pending'
            THEN 'https://queue.fal.run/' || e.endpoint || '/requests/req-' || g || '/status' END,
       CASE WHEN s.status <> 'pending'
            THEN 'https://queue.fal.run/' || e.endpoint || '/requests/req-' || g END,
       CASE WHEN s.status <> 'pending'
            THEN 'https://queue.fal.run/' || e.endpoint || '/requests/req-' || g || '/cancel' END,
       CASE WHEN s.status = 'completed' THEN jsonb_build_object('image', jsonb_build_object(
            'url', 'https://v3.fal.media/files/b/' || g || '/mask.png', 'content_type', 'image/png',
            'file_name', 'mask.png', 'file_size', 20000 + g %% 5000, 'width', 1024, 'height', 768)) END,
       false,
       CASE WHEN s.status = 'failed' THEN 'image_url: could not load the image' END,
       CASE WHEN s.status = 'failed' THEN 'image_load_error' END,
       CASE WHEN s.status = 'failed' THEN jsonb_build_array(jsonb_build_object(
            'loc', jsonb_build_array('body', 'image_url'), 'msg', 'could not load the image',
            'type', 'image_load_error')) END,
       t.at, t.at + interval '3 seconds', t.at + interval '3 seconds',
       CASE WHEN s.status <> 'pending' THEN t.at + interval '1 second' END,
       CASE WHEN s.status IN ('completed', 'failed', 'cancelled') THEN t.at + interval '3 seconds' END,
       1, 0, CASE WHEN s.status IN ('completed', 'failed') THEN 1 ELSE 0 END
FROM generate_series(1, %(rows)s) AS g
CROSS JOIN LATERAL (SELECT %(base)s::timestamptz + (g * %(step)s::float8) * interval '1 second' AS at) t
CROSS JOIN LATERAL (SELECT CASE
    WHEN abs(hashint4(g)) %% 20 < 9 THEN 'fal-ai/evf-sam'
    WHEN abs(hashint4(g)) %% 20 < 17 THEN 'fal-ai/florence-2-large/region-proposal'
    WHEN abs(hashint4(g)) %% 20 < 19 THEN 'fal-ai/flux/dev'
    ELSE 'fal-ai/some/model' END AS endpoint) e
CROSS JOIN LATERAL (SELECT CASE
    WHEN abs(hashint8(g)) %% 100 < 80 THEN 'completed'
    WHEN abs(hashint8(g)) %% 100 < 92 THEN 'failed'
    WHEN abs(hashint8(g)) %% 100 < 95 THEN 'cancelled'
    WHEN abs(hashint8(g)) %% 100 < 97 THEN 'submitted'
    WHEN abs(hashint8(g)) %% 100 < 98 THEN 'in_progress'
    WHEN abs(hashint8(g)) %% 100 < 99 THEN 'pending'
    ELSE 'outcome_unknown' END AS status) s
"""


def scenarios(base: datetime, rows: int) -> list[tuple[str, dict]]:
    """(name, API query parameters); each filter gets a first page and a deep page, except
    external_id, which names one job."""
    after = base + SPAN * 0.9
    before = base + SPAN * 0.5
    filters = [
        ("all", {}),
        ("status", {"status": "failed"}),
        ("endpoint_id", {"endpoint_id": "fal-ai/flux/dev"}),  # 10% of the jobs
        ("created_after", {"created_after": after.isoformat()}),
        ("created_before", {"created_before": before.isoformat()}),
    ]
    out = []
    for name, params in filters:
        out.append((f"{name}/first", params))
        out.append((f"{name}/deep", params))
    out.append(("external_id/first", {"external_id": f"order-{(rows // 2) // 10 * 10 + 1}"}))
    return out


def job_filters(params: dict):

    def when(name):
        return datetime.fromisoformat(params[name]) if name in params else None

    return JobFilters(
        status=params.get("status"),
        endpoint_id=params.get("endpoint_id"),
        external_id=params.get("external_id"),
        created_after=when("created_after"),
        created_before=when("created_before"),
    )


def run(
    rows: int = 1_000_000,
    seconds: float = 2.0,
    wait_quiet_s: float = 0.0,
    min_samples: int = 300,
    deep: int = DEEP,
) -> tuple[str, bool]:
    quiet = wait_quiet(wait_quiet_s)
    watch = QuietWatch()
    run_dir = run_dir_for("history")
    stack = BenchStack(run_dir)
    try:
        stack.start_services(wrk=False)
        base = datetime.now(UTC).replace(microsecond=0) - SPAN - timedelta(hours=1)
        load_s = _generate(stack, rows, base)
        log(f"history: {rows} jobs generated and analyzed in {load_s:.1f}s")
        port = free_port()
        stack.start_receiver(port)

        dsn = stack.database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as raw:
            cases = []
            for name, params in scenarios(base, rows):
                cursor = _cursor_at(raw, stack, params, deep) if name.endswith("/deep") else None
                sql, sql_params = _captured_sql(stack, params, cursor)
                query = {**params, "limit": str(PAGE), **({"cursor": cursor} if cursor else {})}
                cases.append(
                    {
                        "name": name,
                        "url_query": urlencode(query),
                        "sql": sql,
                        "sql_params": sql_params,
                        "plan": _explain(raw, sql, sql_params),
                    }
                )
            floor, results = _measure_interleaved(port, raw, cases, seconds, min_samples)
        for r in results:
            log(
                f"history: {r['name']:22s} api p50={r['api']['p50_ms']:.2f}ms p99={r['api']['p99_ms']:.2f}ms "
                f"sql p50={r['sql']['p50_ms']:.3f}ms p99={r['sql']['p99_ms']:.3f}ms "
                f"(n={r['api']['n']}) rows={r['rows']} plan: {r['plan']['summary']}"
            )
        log(
            f"history: GET /healthz (gunicorn + Flask, no database) p50={floor['p50_ms']:.2f}ms "
            f"p99={floor['p99_ms']:.2f}ms"
        )
        line, ok = _summarise(results, floor, rows, load_s, quiet, run_dir)
        return finish_line(line, quiet, watch), ok
    finally:
        stack.stop()


def _generate(stack: BenchStack, rows: int, base: datetime) -> float:

    dsn = stack.database_url.replace("postgresql+psycopg://", "postgresql://")
    t0 = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute(GENERATE, {"rows": rows, "base": base, "step": SPAN.total_seconds() / rows})
        conn.execute("VACUUM ANALYZE jobs")
        # Write the bulk load out now, not as a checkpoint in the middle of a measurement.
        conn.execute("CHECKPOINT")
    return time.monotonic() - t0


def _cursor_at(raw, stack: BenchStack, params: dict, offset: int) -> str:
    """The cursor the API hands out after `offset` rows of this listing."""

    where, values = _where(params)
    row = raw.execute(
        f"SELECT created_at, id FROM jobs {where} ORDER BY created_at DESC, id DESC "
        f"OFFSET {offset - 1} LIMIT 1",
        values,
    ).fetchone()
    return encode_cursor(SimpleNamespace(created_at=row[0], id=row[1]))


def _where(params: dict) -> tuple[str, dict]:
    clauses, values = [], {}
    for name, column, op in (
        ("status", "status", "="),
        ("endpoint_id", "endpoint_id", "="),
        ("external_id", "external_id", "="),
        ("created_after", "created_at", ">="),
        ("created_before", "created_at", "<"),
    ):
        if name in params:
            clauses.append(f"{column} {op} %({name})s")
            values[name] = (
                datetime.fromisoformat(params[name]) if name.startswith("created") else params[name]
            )
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", values


def _captured_sql(stack: BenchStack, params: dict, cursor: str | None) -> tuple[str, dict]:
    """The exact statement and parameters list_jobs sends for these filters."""

    engine = get_engine(stack.database_url)
    seen = []

    def capture(conn, cur, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with transaction(engine) as s:
            list_jobs(s, job_filters(params), limit=PAGE, cursor=cursor)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return seen[-1]


def _explain(raw, sql: str, params: dict) -> dict:
    doc = raw.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params).fetchone()[0]
    top = doc[0]
    nodes, indexes = [], []

    def walk(node):
        nodes.append(node["Node Type"])
        if "Index Name" in node:
            indexes.append(node["Index Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(top["Plan"])
    # A sort is a failure (the index must give the order), except above the unique
    # external_id index, which yields at most one row.
    unique_lookup = indexes == ["uq_jobs_external_id"]
    ok = (
        bool(indexes)
        and "Seq Scan" not in nodes
        and "Incremental Sort" not in nodes
        and ("Sort" not in nodes or unique_lookup)
    )
    buffers = top["Plan"].get("Shared Hit Blocks", 0) + top["Plan"].get("Shared Read Blocks", 0)
    summary = f"{'+'.join(dict.fromkeys(nodes))} on {','.join(indexes) or '-'}; {buffers} buffers"
    return {
        "ok": ok,
        "nodes": nodes,
        "indexes": indexes,
        "buffers": buffers,
        "execution_ms": top.get("Execution Time"),
        "summary": summary,
    }


def _measure_interleaved(
    port: int, raw, cases: list[dict], seconds: float, min_samples: int
) -> tuple[dict, list[dict]]:
    """Every URL, its raw SQL and GET /healthz, one after another in a loop on one HTTP
    and one database connection, until each has `min_samples` and `seconds` x cases
    have passed: whatever else the machine does, it does to all of them alike, so a
    ratio (API/SQL, deep/first) compares like with like. The client is Python's
    http.client; its own cost is in every sample, /healthz's included."""
    http = HTTPConnection("127.0.0.1", port, timeout=30)
    api = {c["name"]: [] for c in cases}
    sql = {c["name"]: [] for c in cases}
    floor, rows = [], {}

    def get(path: str) -> float:
        t0 = time.perf_counter()
        http.request("GET", path, headers=API_HEADERS)
        response = http.getresponse()
        response_body = response.read()
        elapsed = time.perf_counter() - t0
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {response_body[:300]!r}")
        return elapsed

    def one_round(record: bool) -> None:
        for c in cases:
            a = get(f"/api/jobs?{c['url_query']}")
            t0 = time.perf_counter()
            rows[c["name"]] = len(raw.execute(c["sql"], c["sql_params"]).fetchall())
            q = time.perf_counter() - t0
            if record:
                api[c["name"]].append(a)
                sql[c["name"]].append(q)
        f = get("/healthz")
        if record:
            floor.append(f)

    # Warm: every gunicorn thread gets its pooled connection, and psycopg prepares a
    # statement after 5 executions on both sides.
    for _ in range(min(20, min_samples)):
        one_round(record=False)
    deadline = time.monotonic() + seconds * len(cases)
    while time.monotonic() < deadline or len(floor) < min_samples:
        one_round(record=True)
    http.close()
    results = [
        {
            "name": c["name"],
            "url_query": c["url_query"],
            "api": _percentiles(api[c["name"]]),
            "sql": _percentiles(sql[c["name"]]),
            "plan": c["plan"],
            "rows": rows[c["name"]],
        }
        for c in cases
    ]
    return _percentiles(floor), results


def _percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99), "n": len(ordered)}


def _summarise(
    results: list[dict], floor: dict, rows: int, load_s: float, quiet: str, run_dir: Path
) -> tuple[str, bool]:
    worst = max(results, key=lambda r: r["api"]["p99_ms"] / max(r["sql"]["p99_ms"], 1e-6))
    ratio = worst["api"]["p99_ms"] / max(worst["sql"]["p99_ms"], 1e-6)
    by_name = {r["name"]: r for r in results}
    deep_ratios = {}
    for r in results:
        if r["name"].endswith("/deep"):
            first = by_name[r["name"].replace("/deep", "/first")]
            deep_ratios[r["name"].split("/")[0]] = r["api"]["p50_ms"] / first["api"]["p50_ms"]
    worst_deep = max(deep_ratios.values())
    indexed = sum(1 for r in results if r["plan"]["ok"])
    full_pages = all(r["rows"] == PAGE + 1 for r in results if not r["name"].startswith("external_id"))
    api_p99 = max(r["api"]["p99_ms"] for r in results)
    sql_p99 = max(r["sql"]["p99_ms"] for r in results)
    ok = ratio <= TARGET_RATIO and worst_deep <= DEEP_TOLERANCE and indexed == len(results) and full_pages
    (run_dir / "history.json").write_text(
        json.dumps(
            {
                "rows": rows,
                "load_s": load_s,
                "machine": quiet,
                "results": results,
                "deep_over_first_p50": deep_ratios,
                "healthz": floor,
            },
            indent=2,
            default=str,
        )
    )
    log(f"history: details in {run_dir}")
    line = (
        f"history: rows={rows} api p50={fmt_ms(max(r['api']['p50_ms'] for r in results))} "
        f"p99={fmt_ms(api_p99)} sql p50={max(r['sql']['p50_ms'] for r in results):.2f}ms "
        f"p99={sql_p99:.2f}ms (worst of {len(results)}) ratio<={ratio:.1f} ({worst['name']}) "
        f"deep/first<={worst_deep:.2f} indexes={indexed}/{len(results)} "
        f"healthz p50={floor['p50_ms']:.2f}ms p99={floor['p99_ms']:.2f}ms "
        f"target ratio<=2, deep<=first {'PASS' if ok else 'FAIL'}"
    )
    return line, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--seconds",
        type=float,
        default=2.0,
        help="measuring time per URL (the URLs are measured interleaved)",
    )
    parser.add_argument("--wait-quiet", type=float, default=0.0)
    args = parser.parse_args(argv)
    return main_wrapper("history", lambda: run(args.rows, args.seconds, args.wait_quiet))


if __name__ == "__main__":
    sys.exit(main())
