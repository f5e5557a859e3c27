"""The dashboard's blueprint, its request hooks and its login and logout."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from falbridge.webhooks.api.auth import OFF_WARNING
from falbridge.webhooks.dashboard import guard
from falbridge.webhooks.dashboard import session as sessions
from falbridge.webhooks.errors import ApiError

dashboard = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
dashboard.before_request(guard.require_login)


@dashboard.context_processor
def page_context() -> dict[str, Any]:
    return {
        "auth_off_banner": None if sessions.auth().enabled else OFF_WARNING,
        "csrf_token": sessions.csrf_token,
        "csrf_field": sessions.CSRF_FIELD,
        "logged_in": sessions.logged_in(),
    }


@dashboard.errorhandler(ApiError)
def api_error(exc: ApiError) -> ResponseReturnValue:
    # The model layer's and the API's own checks, shown as a page (or JSON to the script).
    return guard.refusal(exc.status, exc.code, exc.message, exc.details)


@dashboard.get("/")
def index() -> ResponseReturnValue:
    return redirect(url_for("dashboard.list_jobs"), 302)


@dashboard.get("/login")
def login_form() -> ResponseReturnValue:
    if sessions.logged_in():
        return redirect(_next_page())
    return render_template("dashboard/login.html", next=_next_page())


@dashboard.post("/login")
def log_in() -> ResponseReturnValue:
    token = request.form.get("token", "")
    try:
        sessions.auth().check(f"Bearer {token}")
    except ApiError as exc:
        # The token is never echoed back: it may be a real one typed into the wrong place.
        message = "that token is not accepted" if exc.status == 401 else exc.message
        page = render_template("dashboard/login.html", next=_next_page(), error=message)
        return page, exc.status
    if sessions.auth().enabled:
        sessions.log_in(token.strip())
    return redirect(_next_page(), 303)


@dashboard.post("/logout")
def log_out() -> ResponseReturnValue:
    sessions.log_out()
    flash("logged out")
    return redirect(url_for("dashboard.login_form"), 303)


def _next_page() -> str:
    """Where to go after logging in: a path of this dashboard only (no open redirect)."""
    wanted = request.values.get("next") or ""
    parts = urlsplit(wanted)
    same_site = not parts.scheme and not parts.netloc and wanted.startswith("/dashboard/")
    if same_site and "\\" not in wanted and "//" not in wanted:
        return wanted
    return url_for("dashboard.list_jobs")
