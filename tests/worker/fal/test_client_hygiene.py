"""The fal key never leaks, and each process gets its own client."""

from __future__ import annotations

import logging
import os
import pickle
import traceback
import uuid

import pytest

from falbridge.worker.fal import (
    EVF_SAM,
    FalConfigError,
    FalError,
    QueueClient,
    RequestRef,
    SubmitOptions,
    close_client,
    get_client,
)
from tests.plugins.db import free_port
from tests.plugins.sandbox import TEST_FAL_KEY
from tests.worker.fal.test_support import EVF_INPUT, PASS_THROUGH

SECRET = "hygiene-key-id:S3cr3t-b7e41f0c92d4"
SECRET_PARTS = (SECRET, SECRET.split(":")[1])


def failures_of(client: QueueClient, sandbox) -> list[FalError]:
    """One error of each kind the client can raise, all made with the secret key."""
    caught: list[FalError] = []

    def expect_failure(call) -> None:
        with pytest.raises(FalError) as failure:
            call()
        caught.append(failure.value)

    expect_failure(lambda: client.result(RequestRef(EVF_SAM, str(uuid.uuid4()))))
    failed = client.submit(EVF_SAM, {**EVF_INPUT, "blur_mask": 4}, validate=False)
    sandbox.wait_idle()
    expect_failure(lambda: client.result(failed))
    sandbox.set_faults(submit_5xx=1.0)
    expect_failure(lambda: client.submit(EVF_SAM, EVF_INPUT))
    sandbox.set_faults(submit_5xx=0.0, submit_response_lost=1.0)
    expect_failure(lambda: client.submit(EVF_SAM, EVF_INPUT))
    with QueueClient(f"http://127.0.0.1:{free_port()}", SECRET) as nowhere:
        expect_failure(lambda: nowhere.submit(EVF_SAM, EVF_INPUT))
    return caught


def test_the_key_appears_in_no_log_repr_or_error(sandbox, webhook_sink, caplog):
    caplog.set_level(logging.DEBUG)
    webhook = f"{webhook_sink.url}?token=webhook-token-123"
    texts: list[str] = []
    with QueueClient(sandbox.url, SECRET) as client:
        texts += [repr(client), str(client), repr(vars(client))]
        submission = client.submit(
            EVF_SAM, EVF_INPUT, webhook_url=webhook, options=SubmitOptions(priority="low")
        )
        sandbox.wait_idle()
        status = client.status(submission, with_logs=True)
        output = client.result(submission)
        outcome = client.cancel(submission)
        texts += [f"{value!r} {value}" for value in (submission, status, output, outcome)]
        for error in failures_of(client, sandbox):
            texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
    our_lines = [r.getMessage() for r in caplog.records if r.name.startswith("falbridge.worker.fal")]
    assert any("POST /fal-ai/evf-sam" in line for line in our_lines)  # DEBUG logging did happen
    assert not any("webhook-token-123" in line for line in our_lines)  # webhook reduced to its host
    everything = "\n".join(texts + [caplog.text] + [repr(r.__dict__) for r in caplog.records])
    for part in SECRET_PARTS:
        assert part not in everything
    # and the key did reach the sandbox, so the checks above were not vacuous
    assert sandbox.request(submission.request_id)["request_id"] == submission.request_id


def test_client_refuses_to_be_pickled():
    with (
        QueueClient("http://127.0.0.1:9", SECRET) as client,
        pytest.raises(TypeError, match="cannot be pickled"),
    ):
        pickle.dumps(client)


@pytest.fixture
def shared_client_env(monkeypatch, sandbox):
    monkeypatch.setenv("FAL_KEY", TEST_FAL_KEY)
    monkeypatch.setenv("FAL_QUEUE_URL", sandbox.url)
    close_client()
    yield sandbox
    close_client()


def test_get_client_is_one_per_process_and_rebuilt_after_fork(shared_client_env):
    sandbox = shared_client_env
    parent = get_client()
    assert get_client() is parent and parent.base_url == sandbox.url
    parent.submit(PASS_THROUGH, {"from": "parent"})  # leaves a pooled connection to inherit
    pid = os.fork()
    if pid == 0:  # child: report through the exit code only, never return into pytest
        code = 1
        try:
            child = get_client()
            child.submit(PASS_THROUGH, {"from": "child"})
            code = 0 if child is not parent and get_client() is child else 2
        finally:
            os._exit(code)
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert get_client() is parent
    sandbox.wait_idle()
    sent_from = sorted(r["input"]["from"] for r in sandbox.ground_truth()["requests"])
    assert sent_from == ["child", "parent"]


def test_get_client_without_a_key_names_the_env_vars(monkeypatch):
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    close_client()
    with pytest.raises(FalConfigError, match="FAL_KEY"):
        get_client()
