"""The files a job records (models/jobs.py): what `create_job` kept of the input's uploads,
and the result files a completion adds."""

import uuid

from sqlalchemy import select

from falbridge.models.db import transaction
from falbridge.models.jobs import add_result_files, create_job, get_job, input_files_of
from falbridge.models.tables import Job, ResultFile

UPLOADED = [{"where": "image_url", "url": "https://fal.media/files/a.png", "sha256": "00" * 32, "size": 3}]


def test_the_input_files_a_job_was_created_with_read_back(engine):
    with transaction(engine) as s:
        job, _ = create_job(s, "fal-ai/x/y", {"image_url": UPLOADED[0]["url"]}, input_files=UPLOADED)
    with transaction(engine) as s:
        assert input_files_of(get_job(s, job.id, full=True)) == UPLOADED


def test_a_job_created_without_uploads_has_no_input_files(engine):
    with transaction(engine) as s:
        job, _ = create_job(s, "fal-ai/x/y", {"prompt": "cat"})
    with transaction(engine) as s:
        assert input_files_of(get_job(s, job.id, full=True)) == []


def test_a_job_with_no_history_has_no_input_files():
    assert input_files_of(Job(id=uuid.uuid4(), endpoint_id="fal-ai/x/y", input={}, events=[])) == []


def test_adding_result_files_stores_each_and_counts_them(engine):
    with transaction(engine) as s:
        job, _ = create_job(s, "fal-ai/x/y", {})
        files = [{"path": f"images.{n}", "url": f"https://fal.media/files/{n}.png"} for n in range(3)]
        assert add_result_files(s, job.id, files) == 3
        assert add_result_files(s, job.id, []) == 0
    with transaction(engine) as s:
        stored = s.execute(select(ResultFile.path, ResultFile.url).where(ResultFile.job_id == job.id))
        assert sorted(stored) == [(f["path"], f["url"]) for f in files]
