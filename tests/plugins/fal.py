"""Fixtures for the fal client tests.

- `queue_client` (function): a `QueueClient` talking to the sandbox, closed afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from falbridge.worker.fal import QueueClient
from tests.plugins.sandbox import TEST_FAL_KEY, SandboxHandle

__all__ = ["queue_client"]


@pytest.fixture
def queue_client(sandbox: SandboxHandle) -> Iterator[QueueClient]:
    with QueueClient(sandbox.url, TEST_FAL_KEY) as queue:
        yield queue
