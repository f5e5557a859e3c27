"""Shared fixtures. Each area's fixtures live in tests/plugins/ and are re-exported here."""

from tests.plugins.db import *  # noqa: F403
from tests.plugins.pipeline import *  # noqa: F403
from tests.plugins.sandbox import *  # noqa: F403
