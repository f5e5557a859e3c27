"""falbridge.Client's calls on outgoing webhooks: the same names, arguments, answers (the
API's JSON shapes, as dicts) and exceptions as falbridge.create_subscription & co."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol


class _Calls(Protocol):
    def _call(self, method: str, path: str, **kwargs: Any) -> Any: ...


class SubscriptionCalls:
    def create_subscription(
        self: _Calls, url: str, events: Sequence[str], description: str | None = None
    ) -> dict[str, Any]:
        """A new subscription with its `secret` (shown this once)."""
        body = {"url": url, "events": list(events), "description": description}
        answer: dict[str, Any] = self._call("POST", "/api/subscriptions", json=body)
        return answer

    def subscriptions(self: _Calls) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call("GET", "/api/subscriptions")["subscriptions"]
        return found

    def get_subscription(self: _Calls, subscription_id: str) -> dict[str, Any]:
        path = f"/api/subscriptions/{subscription_id}"
        answer: dict[str, Any] = self._call("GET", path, subscription_id=subscription_id)
        return answer

    def update_subscription(
        self: _Calls,
        subscription_id: str,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        enabled: bool | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {"url": url, "events": list(events) if events is not None else None}
        fields |= {"enabled": enabled, "description": description}
        body = {name: value for name, value in fields.items() if value is not None}
        path = f"/api/subscriptions/{subscription_id}"
        answer: dict[str, Any] = self._call("PATCH", path, json=body, subscription_id=subscription_id)
        return answer

    def delete_subscription(self: _Calls, subscription_id: str) -> None:
        self._call("DELETE", f"/api/subscriptions/{subscription_id}", subscription_id=subscription_id)

    def rotate_secret(self: _Calls, subscription_id: str) -> dict[str, Any]:
        path = f"/api/subscriptions/{subscription_id}/rotate-secret"
        answer: dict[str, Any] = self._call("POST", path, subscription_id=subscription_id)
        return answer

    def event_deliveries(
        self: _Calls, subscription_id: str | None = None, *, status: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        params: dict[str, str | int] = {"limit": limit, **({"status": status} if status else {})}
        if subscription_id is None:
            found: list[dict[str, Any]] = self._call("GET", "/api/event-deliveries", params=params)[
                "deliveries"
            ]
            return found
        path = f"/api/subscriptions/{subscription_id}/deliveries"
        answer = self._call("GET", path, params=params, subscription_id=subscription_id)
        listed: list[dict[str, Any]] = answer["deliveries"]
        return listed

    def replay_event(self: _Calls, event_id: str | int, subscription_id: str | None = None) -> list[int]:
        params = {"subscription": subscription_id} if subscription_id else {}
        path = f"/api/events/{event_id}/replay"
        ids: list[int] = self._call("POST", path, params=params, event_id=str(event_id))["deliveries"]
        return ids

    def replay_subscription(self: _Calls, subscription_id: str, since: datetime) -> int:
        path = f"/api/subscriptions/{subscription_id}/replay"
        answer = self._call("POST", path, json={"since": since.isoformat()}, subscription_id=subscription_id)
        return int(answer["replayed"])
