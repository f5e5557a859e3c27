"""What every dashboard request passes through: the login check, the CSRF check on POSTs,
and the security headers on the way out."""

from __future__ import annotations

from flask import Response, g, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from falbridge.webhooks.dashboard import session as sessions

# Reachable without a session: the login form, and the static assets (no data in them).
PUBLIC_ENDPOINTS = frozenset({"dashboard.login_form", "dashboard.log_in", "dashboard.static"})


def require_login() -> ResponseReturnValue | None:
    if request.method == "POST" and request.endpoint != "dashboard.static":
        problem = sessions.csrf_problem(request.form)
        if problem is not None:
            return refusal(400, "csrf_failed", problem)
    if request.endpoint in PUBLIC_ENDPOINTS or sessions.logged_in():
        return None
    if wants_json():
        return refusal(401, "unauthorized", "log in at /dashboard/login first")
    return redirect(url_for("dashboard.login_form", next=request.full_path.rstrip("?")))


def wants_json() -> bool:
    return (
        request.endpoint == "dashboard.live_statuses" or request.accept_mimetypes.best == "application/json"
    )


def refusal(status: int, code: str, message: str, details: object = None) -> ResponseReturnValue:
    """A 4xx naming the problem: JSON for scripts, a page for people."""
    if wants_json():
        return jsonify({"error": {"code": code, "message": message, "details": details}}), status
    page = render_template("dashboard/error.html", status=status, code=code, message=message, details=details)
    return page, status


def content_security_policy(image_sources: list[str]) -> str:
    images = " ".join(["'self'", *sorted(set(image_sources))])
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"img-src {images}; connect-src 'self'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )


def secure_headers(response: Response) -> Response:
    """On every response under /dashboard, its 404s and 405s too (the app calls this)."""
    if request.path != "/dashboard" and not request.path.startswith("/dashboard/"):
        return response
    response.headers["Content-Security-Policy"] = content_security_policy(g.get("image_sources", []))
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    if request.endpoint != "dashboard.static":
        response.headers["Cache-Control"] = "no-store"
    return response
