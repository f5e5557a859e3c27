"""Who is looking at the dashboard: an API token, presented once at the login form, turns
into a session cookie signed with a key derived from FALBRIDGE_SECRET_KEY.

The cookie never holds the token, nor its digest: only a tag of the digest (HMAC with the
session key's purpose), so a token removed from FALBRIDGE_API_TOKENS logs its sessions out
at their next request, and a leaked cookie tells nothing about any token. Every form of the
dashboard carries the session's CSRF token, checked with `hmac.compare_digest`.

itsdangerous (Flask's own dependency) signs; the keys are read when the first session is
opened, not when the app is made, so an app that never serves the dashboard needs no key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from flask import Flask, Request, current_app, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer

from falbridge.secret_key import derived_keys
from falbridge.webhooks import current
from falbridge.webhooks.api.auth import ApiAuth, token_digest

COOKIE = "falbridge_dashboard"
LIFETIME = timedelta(hours=12)
CSRF_FIELD = "csrf_token"
_PURPOSE = "dashboard-session"


class DerivedKeySessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with every configured key accepted (a rotation keeps
    sessions) and the first one signing."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        # Flask opens a session for every request: the receiver's and the API's, which never
        # carry this cookie, need no key for that.
        if not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        serializer: URLSafeTimedSerializer | None = app.extensions.get("falbridge_session_serializer")
        if serializer is None:
            keys = derived_keys(app.config["FALBRIDGE"], _PURPOSE)
            # itsdangerous signs with the last of a list and accepts them all.
            serializer = URLSafeTimedSerializer(
                list(reversed(keys)),
                salt=self.salt,
                serializer=self.serializer,
                signer_kwargs={"key_derivation": self.key_derivation, "digest_method": self.digest_method},
            )
            app.extensions["falbridge_session_serializer"] = serializer
        return serializer


def install(app: Flask) -> None:
    app.session_interface = DerivedKeySessions()
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=LIFETIME,
    )


def auth() -> ApiAuth:
    found: ApiAuth = current_app.extensions["falbridge_auth"]
    return found


def _tag(digest: bytes) -> str:
    key = derived_keys(current.config(), _PURPOSE + ":token")[0]
    return hmac.new(key, digest, hashlib.sha256).hexdigest()


def log_in(token: str) -> None:
    """Start a session for a token auth.check accepted (a fresh session: no fixation)."""
    session.clear()
    session.permanent = True
    session["token_tag"] = _tag(token_digest(token))
    session[CSRF_FIELD] = secrets.token_urlsafe(32)


def log_out() -> None:
    session.clear()


def logged_in() -> bool:
    """True while the session's token is still configured, or when API auth is off."""
    checker = auth()
    if not checker.enabled:
        return True
    tag = session.get("token_tag")
    if not isinstance(tag, str):
        return False
    matched = False
    for digest in checker.digests:  # no early exit, as auth.check
        matched |= hmac.compare_digest(tag, _tag(digest))
    return matched


def csrf_token() -> str:
    """The session's CSRF token, made on first use (the login form needs one too)."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def csrf_problem(form: Any) -> str | None:
    """Why a POST's CSRF token is refused, or None when it is the session's."""
    presented = form.get(CSRF_FIELD)
    expected = session.get(CSRF_FIELD)
    if not presented:
        return f"missing CSRF token: the form field {CSRF_FIELD!r} is required; reload the page"
    if not isinstance(expected, str) or not hmac.compare_digest(str(presented).encode(), expected.encode()):
        return "invalid CSRF token: it does not belong to this session; reload the page and try again"
    return None
