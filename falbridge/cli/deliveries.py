"""`falbridge deliveries list | show | reapply`: fal's stored callbacks (exit codes:
cli.errors). On the database (falbridge.local_deliveries) or, with `falbridge --api URL`
(FALBRIDGE_API_URL), through that falbridge's HTTP API (falbridge.Client): the same
values either way, so the same output."""

from __future__ import annotations

import json
import uuid
from typing import Any, Protocol

import click
from rich.console import Console

from falbridge import local, local_deliveries
from falbridge.cli.api import remote_client
from falbridge.cli.errors import CliGroup
from falbridge.cli.jobs import answered
from falbridge.cli.render import format_when, make_console, make_table, short_json
from falbridge.delivery_values import Delivery, DeliveryPage, Reapplied
from falbridge.models.deliveries import MAX_PAGE, OUTCOMES
from falbridge.values import Job


class DeliveriesApi(Protocol):
    def list_deliveries(
        self,
        *,
        request_id: str | None = None,
        job_id: str | None = None,
        processed: bool | None = None,
        outcome: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> DeliveryPage: ...

    def get_delivery(self, delivery_id: int) -> Delivery: ...

    def reapply_delivery(self, delivery_id: int) -> Reapplied: ...

    def get(self, job_id: str) -> Job: ...


class _InProcess:
    list_deliveries = staticmethod(local_deliveries.list_deliveries)
    get_delivery = staticmethod(local_deliveries.get_delivery)
    reapply_delivery = staticmethod(local_deliveries.reapply_delivery)
    get = staticmethod(local.get)


def deliveries_api(ctx: click.Context) -> DeliveriesApi:
    remote = remote_client(ctx)
    return _InProcess() if remote is None else remote


@click.group(cls=CliGroup)
def deliveries() -> None:
    """fal's callbacks as stored (deliveries): list, show, re-apply."""


@deliveries.command("list")
@click.option("--request-id", help="Only deliveries for this fal request id.")
@click.option("--job", "job_id", metavar="JOB_ID", help="Only those applied to this job (an id or a prefix).")
@click.option(
    "--processed/--unprocessed",
    default=None,
    help="Only processed ones, or only those still waiting to be applied.",
)
@click.option("--outcome", type=click.Choice(OUTCOMES), help="Only deliveries with this outcome.")
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=50, show_default=True)
@click.option("--cursor", help="The next-page cursor a previous listing printed.")
@click.option("--json", "as_json", is_flag=True, help="Print {deliveries, next_cursor} as JSON.")
@click.pass_context
def list_command(
    ctx: click.Context,
    request_id: str | None,
    job_id: str | None,
    processed: bool | None,
    outcome: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Stored callbacks, newest first."""
    api = deliveries_api(ctx)
    with answered(cursor="--cursor is not one a listing printed"):
        full_job_id = _full_job_id(api, job_id) if job_id is not None else None
        page = api.list_deliveries(
            request_id=request_id,
            job_id=full_job_id,
            processed=processed,
            outcome=outcome,
            limit=limit,
            cursor=cursor,
        )
    if as_json:
        click.echo(json.dumps(page.to_json()))
        return
    out = make_console()
    table = make_table(out, "id", "request id", "job", "received (UTC)", "processed (UTC)", "outcome")
    for d in page.deliveries:
        table.add_row(
            str(d.id),
            d.request_id or "",
            d.job_id or "",
            format_when(d.received_at),
            format_when(d.processed_at) if d.processed else "unprocessed",
            d.outcome or "",
        )
    out.print(table)
    if page.next_cursor:
        out.print(f"next page: --cursor {page.next_cursor}")


@deliveries.command("show")
@click.argument("delivery_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the delivery as JSON.")
@click.pass_context
def show_command(ctx: click.Context, delivery_id: int, as_json: bool) -> None:
    """Every field of a stored callback, and its body."""
    with answered():
        delivery = deliveries_api(ctx).get_delivery(delivery_id)
    if as_json:
        click.echo(json.dumps(delivery.to_json()))
    else:
        _show_tables(make_console(), delivery)


@deliveries.command("reapply")
@click.argument("delivery_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print {outcome, delivery} as JSON.")
@click.pass_context
def reapply_command(ctx: click.Context, delivery_id: int, as_json: bool) -> None:
    """Apply a stored callback now, as a worker would; one processed already is left as it
    is (`already processed`, nothing changed)."""
    with answered():
        reapplied = deliveries_api(ctx).reapply_delivery(delivery_id)
    if as_json:
        click.echo(json.dumps(reapplied.to_json()))
        return
    d = reapplied.delivery
    job = f" (job {d.job_id})" if d.job_id else ""
    if reapplied.already_processed:
        when = format_when(d.processed_at)
        click.echo(f"delivery {d.id}: already processed ({d.outcome} at {when} UTC); nothing changed")
    else:
        why = f": {d.processing_error}" if d.processing_error else ""
        click.echo(f"delivery {d.id}: {reapplied.outcome}{job}{why}")


def _full_job_id(api: DeliveriesApi, job_id: str) -> str:
    """A full id as given; a prefix resolved to the one job it names (JobNotFound,
    AmbiguousJobId), as every job command takes one."""
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        return api.get(job_id).id


def _show_tables(out: Console, delivery: Delivery) -> None:
    data: dict[str, Any] = delivery.to_json()
    fields = make_table(out, "field", "value", title=f"delivery {delivery.id}")
    for key, value in data.items():
        if key in ("body", "body_text"):
            continue
        fields.add_row(key, "" if value is None else str(value))
    out.print(fields)
    out.print("body:")
    out.print(short_json(data["body"]) if data["body_text"] is None else data["body_text"][:2000])
