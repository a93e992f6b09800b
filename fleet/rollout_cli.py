"""``fleet rollout create|list|show|act``: staged rollouts through the admin API.

The server URL and token come from ``--url``/``--token`` or ``FLEET_URL``/``FLEET_TOKEN``.
Waves are cumulative percents (``--waves 1,10,50,100``) sharing one soak time and one
set of gates; write the JSON plan yourself (``--plan plan.json``) for anything finer.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fleet.client import AdminClient, ApiError

__all__ = ["build_plan", "rollout_app"]

rollout_app = typer.Typer(no_args_is_help=True, help="staged rollouts (waves, gates, rollback)")
_out = Console()
_err = Console(stderr=True)

Url = Annotated[str, typer.Option("--url", envvar="FLEET_URL", help="the server")]
Token = Annotated[str, typer.Option("--token", envvar="FLEET_TOKEN", help="an API token")]


def build_plan(
    waves: str,
    *,
    soak_seconds: float,
    max_failure_rate: float,
    max_rollback_rate: float,
    max_offline_share: float,
    min_reports: int,
    on_failure: str,
    drift_gate: bool = True,
) -> dict[str, Any]:
    gates = {
        "max_failure_rate": max_failure_rate,
        "max_rollback_rate": max_rollback_rate,
        "max_offline_share": max_offline_share,
        "min_reports": min_reports,
    }
    try:
        percents = [float(p) for p in waves.split(",") if p.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"--waves: {waves!r} is not a list of percents") from exc
    return {
        "on_failure": on_failure,
        "drift_gate": drift_gate,
        "waves": [{"percent": p, "soak_seconds": soak_seconds, "gates": gates} for p in percents],
    }


def _client(url: str, token: str) -> AdminClient:
    return AdminClient(url, token)


def _fail(exc: ApiError) -> typer.Exit:
    _err.print(f"[red]error:[/] {exc}")
    return typer.Exit(1)


@rollout_app.command("create")
def create(
    release: Annotated[str, typer.Option(help="digest of a registered release")],
    device_class: Annotated[str, typer.Option("--class", help="target device class")],
    url: Url,
    token: Token,
    tag: Annotated[list[str] | None, typer.Option(help="target devices with this tag")] = None,
    current_release: Annotated[str | None, typer.Option(help="only devices on it")] = None,
    waves: Annotated[str, typer.Option(help="cumulative percents")] = "1,10,50,100",
    soak: Annotated[float, typer.Option(help="seconds each wave soaks")] = 600.0,
    max_failure_rate: float = 0.05,
    max_rollback_rate: float = 0.05,
    max_offline_share: float = 0.5,
    min_reports: int = 5,
    on_failure: Annotated[str, typer.Option(help="pause or rollback")] = "rollback",
    drift_gate: Annotated[
        bool, typer.Option(help="let field drift of the new release hold a wave")
    ] = True,
    plan: Annotated[Path | None, typer.Option(help="a JSON plan instead of the above")] = None,
    rollout_id: Annotated[str | None, typer.Option("--id")] = None,
    approve: Annotated[bool, typer.Option(help="approve right away")] = False,
) -> None:
    """Create a rollout (it waits for `act ID approve` unless --approve)."""
    body = (
        json.loads(plan.read_text())
        if plan
        else build_plan(
            waves,
            soak_seconds=soak,
            max_failure_rate=max_failure_rate,
            max_rollback_rate=max_rollback_rate,
            max_offline_share=max_offline_share,
            min_reports=min_reports,
            on_failure=on_failure,
            drift_gate=drift_gate,
        )
    )
    with _client(url, token) as client:
        try:
            created = client.create_rollout(
                release,
                body,
                device_class=device_class,
                tags=tag or (),
                current_release=current_release,
                rollout_id=rollout_id,
            )
            if approve:  # the approved rollout, still saying which devices were left out
                approved = client.act_on_rollout(created["id"], "approve")
                created = {**approved, "left_out": created["left_out"]}
        except ApiError as exc:
            raise _fail(exc) from exc
    sys.stdout.write(json.dumps(created) + "\n")


@rollout_app.command("list")
def list_(url: Url, token: Token, active: bool = False) -> None:
    """Rollouts, oldest first."""
    with _client(url, token) as client:
        try:
            items = client.rollouts(active=active)
        except ApiError as exc:
            raise _fail(exc) from exc
    table = Table("id", "release", "status", "wave", "devices")
    for r in items:
        wave = f"{r['wave'] + 1}/{r['waves']}"
        table.add_row(r["id"], r["release_digest"][:12], r["status"], wave, str(r["population"]))
    _out.print(table)


@rollout_app.command("show")
def show(
    rollout_id: str,
    url: Url,
    token: Token,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A rollout's progress per wave, rollback outcomes and events."""
    with _client(url, token) as client:
        try:
            body = client.rollout(rollout_id)
        except ApiError as exc:
            raise _fail(exc) from exc
    if as_json:
        sys.stdout.write(json.dumps(body) + "\n")
        return
    _out.print(f"rollout {body['id']}: {body['status']}, wave {body['wave'] + 1}/{body['waves']}")
    table = Table("wave", "devices (cumulative)", "directed", "states")
    for w in body["progress"]:
        states = ", ".join(f"{k} {v}" for k, v in sorted(w["states"].items()))
        table.add_row(str(w["index"] + 1), str(w["cut"]), str(w["directed"]), states)
    _out.print(table)
    for event in body["events"]:
        _out.print(f"{event['at']} {event['kind']} by {event['actor']} {event['detail'] or ''}")


@rollout_app.command("act")
def act(
    rollout_id: str,
    action: Annotated[str, typer.Argument(help="approve, pause, resume, abort or rollback")],
    url: Url,
    token: Token,
) -> None:
    """Approve, pause, resume, abort or roll back a rollout."""
    with _client(url, token) as client:
        try:
            body = client.act_on_rollout(rollout_id, action)
        except ApiError as exc:
            raise _fail(exc) from exc
    sys.stdout.write(json.dumps(body) + "\n")
