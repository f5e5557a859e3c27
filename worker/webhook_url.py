"""The webhook URL falbridge hands fal with each job, and the proof it carries.

fal signs a callback's request id, not our query string, so `?job=<id>` alone proves
nothing: anyone holding a callback signed by fal could post it with another job's id. The
URL therefore also carries `token`, an HMAC of the job id under the deployment's secret
key: only a URL falbridge made has it. A callback may bind to a job by its URL (when it
beats the submit response, or the submit's outcome is unknown) only with a valid token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from urllib.parse import urlencode

from falbridge import config
from falbridge.secret_key import derived_keys

PURPOSE = "falbridge webhook url v1"
TOKEN_BYTES = 16


def webhook_url(job_id: uuid.UUID | str) -> str:
    cfg = config.current()
    query = urlencode({"job": str(job_id), "token": _token(derived_keys(cfg, PURPOSE)[0], str(job_id))})
    return f"{cfg.fal.webhook_url_base}?{query}"


def proves(job_id: uuid.UUID | str, token: str | None) -> bool:
    """True if `token` was made for this job id under any configured key (constant time)."""
    if not token:
        return False
    presented = token.encode("utf-8", "surrogatepass")
    keys = derived_keys(config.current(), PURPOSE)
    return any(hmac.compare_digest(_token(key, str(job_id)).encode(), presented) for key in keys)


def _token(key: bytes, job_id: str) -> str:
    digest = hmac.new(key, job_id.encode(), hashlib.sha256).digest()[:TOKEN_BYTES]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
