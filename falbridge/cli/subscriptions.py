"""Commands on outgoing webhooks: `subscriptions create|list|show|update|delete|
rotate-secret|replay|deliveries` and `events replay` (exit codes: cli.errors).

Like the job commands, each works on the database (falbridge.local_subscriptions) or,
with `falbridge --api URL` (or FALBRIDGE_API_URL), through that falbridge's HTTP API
(falbridge.Client): the same calls and answers either way. A secret is printed only by
`create` and `rotate-secret`, the one time it exists in clear.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from falbridge import config, local_subscriptions
from falbridge.cli.errors import CliGroup
from falbridge.cli.jobs import answered, time_option
from falbridge.client import Client
from falbridge.models.outbox import EVENT_TYPES
from falbridge.models.tables import DELIVERY_STATUSES


def _api(ctx: click.Context) -> Any:
    """falbridge.local_subscriptions, or a Client of the API `--api` names: same calls."""
    client = config.current().client
    url = ctx.find_root().params.get("api") or client.api_url
    if not url:
        return local_subscriptions
    token = client.api_token.get_secret_value() if client.api_token is not None else None
    remote = Client(url, token)
    ctx.call_on_close(remote.close)
    return remote


def _print(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


_EVENTS = click.option(
    "--event",
    "-e",
    "events",
    multiple=True,
    type=click.Choice(EVENT_TYPES),
    help="An event type to send (repeat for several); job.status_changed is every transition.",
)


@click.group(cls=CliGroup)
def subscriptions() -> None:
    """Outgoing webhooks: your URLs that get job events, signed (Standard Webhooks)."""


@subscriptions.command("create")
@click.argument("url")
@_EVENTS
@click.option("--description")
@click.pass_context
def create(ctx: click.Context, url: str, events: tuple[str, ...], description: str | None) -> None:
    """Subscribe URL to the events; prints the subscription and its secret, once."""
    with answered():
        made = _api(ctx).create_subscription(url, list(events), description)
    _print(made)
    click.echo("The secret is shown only now: keep it where your receiver can read it.", err=True)


@subscriptions.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print them as a JSON array.")
@click.pass_context
def list_subscriptions(ctx: click.Context, as_json: bool) -> None:
    """Every subscription: id, enabled, events, URL (never a secret)."""
    with answered():
        found = _api(ctx).subscriptions()
    if as_json:
        _print(found)
        return
    for sub in found:
        state = "enabled" if sub["enabled"] else f"disabled ({sub['disabled_reason'] or 'by a user'})"
        click.echo(f"{sub['id']}  {state}  {','.join(sub['events'])}  {sub['url']}")


@subscriptions.command("show")
@click.argument("subscription_id")
@click.pass_context
def show(ctx: click.Context, subscription_id: str) -> None:
    with answered():
        _print(_api(ctx).get_subscription(subscription_id))


@subscriptions.command("update")
@click.argument("subscription_id")
@click.option("--url")
@_EVENTS
@click.option("--enable/--disable", "enabled", default=None)
@click.option("--description")
@click.pass_context
def update(
    ctx: click.Context,
    subscription_id: str,
    url: str | None,
    events: tuple[str, ...],
    enabled: bool | None,
    description: str | None,
) -> None:
    """Change the URL, the events (all of them, given again), enable or disable."""
    with answered():
        changed = _api(ctx).update_subscription(
            subscription_id, url=url, events=list(events) or None, enabled=enabled, description=description
        )
    _print(changed)


@subscriptions.command("delete")
@click.argument("subscription_id")
@click.pass_context
def delete(ctx: click.Context, subscription_id: str) -> None:
    with answered():
        _api(ctx).delete_subscription(subscription_id)
    click.echo(f"{subscription_id} deleted")


@subscriptions.command("rotate-secret")
@click.argument("subscription_id")
@click.pass_context
def rotate(ctx: click.Context, subscription_id: str) -> None:
    """A new secret, printed once; the old one keeps signing beside it for
    FALBRIDGE_NOTIFY_ROTATION_OVERLAP_S."""
    with answered():
        _print(_api(ctx).rotate_secret(subscription_id))


@subscriptions.command("replay")
@click.argument("subscription_id")
@click.option("--since", required=True, callback=time_option, help="ISO-8601 time: every event since then.")
@click.pass_context
def replay(ctx: click.Context, subscription_id: str, since: datetime) -> None:
    """Deliver again every event since a time that the subscription lists (from before it
    existed too)."""
    with answered():
        count = _api(ctx).replay_subscription(subscription_id, since)
    click.echo(f"{count} events to {subscription_id} on their way")


@subscriptions.command("deliveries")
@click.argument("subscription_id", required=False)
@click.option("--status", type=click.Choice(DELIVERY_STATUSES), help="exhausted: the dead letters.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.pass_context
def show_deliveries(ctx: click.Context, subscription_id: str | None, status: str | None, limit: int) -> None:
    """Deliveries newest first, with every attempt, as JSON."""
    with answered():
        _print(_api(ctx).event_deliveries(subscription_id, status=status, limit=limit))


@click.group(cls=CliGroup)
def events() -> None:
    """Job events as outgoing webhooks."""


@events.command("replay")
@click.argument("event_id")
@click.option("--subscription", "subscription_id", help="Only to this subscription.")
@click.pass_context
def replay_event(ctx: click.Context, event_id: str, subscription_id: str | None) -> None:
    """Deliver one event (evt_<n>, as webhook-id shows it) again."""
    with answered():
        ids = _api(ctx).replay_event(event_id, subscription_id)
    click.echo(f"{event_id}: {len(ids)} deliveries on their way")
