"""fal's webhook body, read tolerantly (docs/fal-protocol.md, "Callbacks")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from falbridge import strict_json


class CallbackFormatError(ValueError):
    pass


@dataclass(frozen=True)
class Callback:
    request_id: str
    gateway_request_id: str | None
    ok: bool
    payload: Any
    payload_error: str | None
    error: str | None

    @property
    def needs_fetch(self) -> bool:
        """fal could not put the output in the body; it must be fetched from the queue."""
        return self.payload is None and self.payload_error is not None


def parse_callback(body: bytes) -> Callback:
    try:
        doc = strict_json.loads(body)
    except strict_json.JSONRejected as exc:
        if exc.problem == "too_deep":
            raise CallbackFormatError("body is nested too deeply") from None
        raise CallbackFormatError(f"body is not strict JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CallbackFormatError("body is not a JSON object")
    request_id = doc.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise CallbackFormatError("body has no request_id")
    status = doc.get("status")
    if status not in ("OK", "ERROR"):
        raise CallbackFormatError(f"unknown callback status {status!r}")
    gateway = doc.get("gateway_request_id")
    payload, payload_error = _storable_payload(doc.get("payload"), doc.get("payload_error"))
    error = doc.get("error")
    return Callback(
        request_id=request_id,
        gateway_request_id=gateway if isinstance(gateway, str) and strict_json.is_storable(gateway) else None,
        ok=status == "OK",
        payload=payload,
        payload_error=payload_error,
        error=strict_json.storable(str(error)) if error is not None else None,
    )


def _storable_payload(payload: Any, payload_error: Any) -> tuple[Any, str | None]:
    """A payload the database cannot store (a NUL, a lone surrogate) is treated as one fal
    could not send: the job's result is fetched instead, and the fetch refuses it for good,
    rather than every attempt to apply this callback failing at the database."""
    try:
        strict_json.check_tree(payload, storable=True)
    except strict_json.JSONRejected as exc:
        return None, f"payload not kept: {exc}{_where(exc.path)}"
    return payload, strict_json.storable(str(payload_error)) if payload_error is not None else None


def _where(path: tuple[str | int, ...]) -> str:
    return f" (at payload.{strict_json.field_name(path)})" if path else ""
