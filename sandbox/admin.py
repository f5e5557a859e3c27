"""Admin API under /_sandbox/ (no auth): faults, settings, keys, ground truth, idle-wait."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from falbridge.sandbox.config import SettingsError
from falbridge.sandbox.web import detail, json_response, read_json

if TYPE_CHECKING:
    from falbridge.sandbox.core import Sandbox

MAX_IDLE_WAIT_S = 600.0


class AdminApi:
    def __init__(self, core: Sandbox) -> None:
        self.core = core
        self._routes = {
            ("GET", ""): self._info,
            ("GET", "faults"): self._get_faults,
            ("PUT", "faults"): self._put_faults,
            ("GET", "config"): self._get_config,
            ("PUT", "config"): self._put_config,
            ("POST", "keys/rotate"): self._rotate_keys,
            ("POST", "reset"): self._reset,
            ("GET", "requests"): self._requests,
            ("GET", "idle"): self._idle,
        }

    def dispatch(self, request: Request) -> Response:
        sub_path = request.path[len("/_sandbox") :].strip("/")
        handler = self._routes.get((request.method, sub_path))
        if handler is not None:
            return handler(request)
        if request.method == "GET" and sub_path.startswith("requests/"):
            return self._one_request(sub_path[len("requests/") :])
        if any(path == sub_path for _, path in self._routes):
            return detail("Method Not Allowed", 405)
        return detail("Not Found", 404)

    def _info(self, request: Request) -> Response:
        base = request.host_url.rstrip("/")
        return json_response(
            {"url": base, "jwks_url": f"{base}/.well-known/jwks.json", **self.core.summary()}
        )

    def _get_faults(self, request: Request) -> Response:
        return json_response(self.core.faults.as_dict())

    def _put_faults(self, request: Request) -> Response:
        changes = _json_object(request)
        if isinstance(changes, Response):
            return changes
        try:
            return json_response(self.core.update_faults(changes).as_dict())
        except SettingsError as exc:
            return detail(str(exc), 400)

    def _get_config(self, request: Request) -> Response:
        return json_response(self.core.config.runtime_view())

    def _put_config(self, request: Request) -> Response:
        changes = _json_object(request)
        if isinstance(changes, Response):
            return changes
        try:
            return json_response(self.core.update_config(changes).runtime_view())
        except SettingsError as exc:
            return detail(str(exc), 400)

    def _rotate_keys(self, request: Request) -> Response:
        options = _json_object(request, allow_empty=True)
        if isinstance(options, Response):
            return options
        keep_old = options.get("keep_old", False)
        if not isinstance(keep_old, bool):
            return detail("keep_old must be true or false", 400)
        key = self.core.keys.rotate(keep_old)
        return json_response({"kid": key.kid, "jwks": self.core.keys.jwks()})

    def _reset(self, request: Request) -> Response:
        self.core.reset()
        return json_response({"reset": True})

    def _requests(self, request: Request) -> Response:
        return json_response(self.core.ground_truth())

    def _one_request(self, request_id: str) -> Response:
        record = self.core.ground_truth(request_id)
        return json_response(record) if record is not None else detail("Request not found", 404)

    def _idle(self, request: Request) -> Response:
        try:
            timeout = min(float(request.args.get("timeout", "10")), MAX_IDLE_WAIT_S)
        except ValueError:
            return detail("timeout must be a number of seconds", 400)
        idle = self.core.activity.wait_idle(max(0.0, timeout))
        return json_response({"idle": idle}, 200 if idle else 408)


def _json_object(request: Request, allow_empty: bool = False) -> dict[str, Any] | Response:
    if allow_empty and not request.get_data():
        return {}
    ok, value = read_json(request)
    if not ok or not isinstance(value, dict):
        return detail("body must be a JSON object", 400)
    return value
