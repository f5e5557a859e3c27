"""Storing the files of the jobs one commit completed, in waves: each wave's files looked
up in one transaction (one statement), downloaded side by side, and recorded in one
transaction by the single-job rules of falbridge.worker.storage.store (the job locked,
the record inserted once, the files_stored event with the job's last) but with a fixed
number of statements however many files and jobs (falbridge.models.record_files); two
transactions a wave instead of two or more a job.

Only a first run goes this way (attempt 1); a job with a file to try again goes on by
itself (falbridge.worker.tasks.store_files). When recording a wave fails, its files are
recorded one job at a time (and a job's that fails one file at a time), so one bad row
leaves the others recorded.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from sqlalchemy.orm import Session

from falbridge import config
from falbridge.models.db import transaction
from falbridge.models.jobs import parse_uuid
from falbridge.models.record_files import record_files
from falbridge.worker import side_by_side
from falbridge.worker.storage.store import (
    Fetched,
    FileToStore,
    StoreOutcome,
    StoreReport,
    fetch,
    files_to_store_of,
    finish,
    outcome_row,
    settle,
)

log = logging.getLogger(__name__)


def store_all(job_ids: Sequence[str]) -> list[tuple[str, StoreReport | None]]:
    """The first run for each job, in order; None where it raised (the sweeper stores the
    job's files once FALBRIDGE_STORE_GRACE_S has passed)."""
    final = config.current().storage.retries == 0
    done: list[tuple[str, StoreReport | None]] = []
    for wave in side_by_side.chunks(job_ids, side_by_side.PARALLEL):
        done.extend(_wave(wave, final))
    return done


def _wave(job_ids: list[str], final: bool) -> list[tuple[str, StoreReport | None]]:
    ids = {job_id: parse_uuid(job_id) for job_id in job_ids}
    with transaction() as s:
        looked_up = files_to_store_of(s, [job_uuid for job_uuid in ids.values() if job_uuid is not None])
    found = {
        job_id: looked_up[job_uuid] if job_uuid else StoreReport(StoreOutcome.NOTHING_TO_STORE)
        for job_id, job_uuid in ids.items()
    }
    work: list[tuple[uuid.UUID, FileToStore]] = []
    for job_id, files in found.items():
        job_uuid = ids[job_id]
        if isinstance(files, list) and job_uuid is not None:
            work.extend((job_uuid, f) for f in files)
    fetched = side_by_side.run_each(work, lambda item: fetch(*item))
    reports = {job_uuid: StoreReport(StoreOutcome.DONE) for job_uuid, _ in work}
    rows = [
        (done, outcome_row(done, 1, final, reports[done.job_id])) for _, done in fetched if done is not None
    ]
    recorded = _record_all([(done, row) for done, row in rows if row is not None])
    failed = {job_uuid for (job_uuid, _), done in fetched if done is None}
    for done, row in rows:
        if row is None:
            continue
        if done.key in recorded:
            settle(done, recorded[done.key], reports[done.job_id])
        else:  # not recorded: its job is the sweeper's
            failed.add(done.job_id)

    def result(job_id: str) -> StoreReport | None:
        files, job_uuid = found[job_id], ids[job_id]
        if isinstance(files, StoreReport):
            return files
        return None if job_uuid is None or job_uuid in failed else finish(reports[job_uuid])

    return [(job_id, result(job_id)) for job_id in job_ids]


def _record_all(rows: list[tuple[Fetched, dict[str, object]]]) -> dict[str, bool]:
    """Whether each record (by object key) was made by this run: the wave's in one
    transaction of a fixed number of statements (models.record_files). When that fails,
    one job at a time, and within a job that fails, one file at a time: one bad row
    leaves the others recorded."""
    try:
        with transaction() as s:
            return _record_in(s, rows)
    except Exception as exc:
        log.warning("store: recording a wave of %d files failed (%s); one job at a time", len(rows), exc)
    recorded: dict[str, bool] = {}
    for job_id in sorted({done.job_id for done, _ in rows}):
        own = [(done, row) for done, row in rows if done.job_id == job_id]
        try:
            with transaction() as s:
                recorded.update(_record_in(s, own))
            continue
        except Exception as exc:
            log.warning("store %s: recording its %d files failed (%s); one at a time", job_id, len(own), exc)
        for done, row in own:
            try:
                with transaction() as s:
                    recorded.update(_record_in(s, [(done, row)]))
            except Exception as exc:
                log.error("store %s %s: not recorded (%s)", done.job_id, done.file.path, exc)
    return recorded


def _record_in(s: Session, rows: list[tuple[Fetched, dict[str, object]]]) -> dict[str, bool]:
    made = record_files(s, [(done.job_id, row) for done, row in rows])
    return {done.key: answer.mine for (done, _), answer in zip(rows, made, strict=True)}
