"""The pipeline baseline's task: falbridge's own Celery app (same broker, same settings:
acks_late, prefetch 1, JSON, the `falbridge` queue) plus one task that does nothing.

    celery -A bench.noop_task:celery_app worker --pool=prefork --concurrency=N
"""

from falbridge.worker.celery_app import celery_app, ensure_broker

ensure_broker()


@celery_app.task(name="falbridge.bench_noop")
def noop() -> None:
    return None
