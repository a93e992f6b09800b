"""``fleet drift report --release D``: the drift of a release's telemetry, as a table.

The server URL and token come from ``--url``/``--token`` or ``FLEET_URL``/``FLEET_TOKEN``.
One row per window and stream (histogram x cohort): the noise-aware statistic summed over
the last windows, its Monte-Carlo p-value, debiased PSI and Jensen-Shannon distance, and
whether the window's alert is open (docs/telemetry.md).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fleet.client import AdminClient, ApiError

__all__ = ["drift_app", "drift_table"]

drift_app = typer.Typer(no_args_is_help=True, help="field drift of released telemetry")
_out = Console()
_err = Console(stderr=True)

Url = Annotated[str, typer.Option("--url", envvar="FLEET_URL", help="the server")]
Token = Annotated[str, typer.Option("--token", envvar="FLEET_TOKEN", help="an API token")]


def drift_table(report: dict[str, Any]) -> Table:
    """The API's drift report as a table, oldest window first."""
    table = Table(title=f"drift of release {report['release_digest'][:12]}")
    for column in ("window", "alert", "stream", "windows", "T", "p", "PSI", "JS", "named"):
        table.add_column(column)
    for window in report["windows"]:
        alert = "OPEN" if window["alert_open"] else "-"
        if window["event"]:
            alert += f" ({window['event']})"
        for stream in window["streams"]:
            table.add_row(
                window["window_start"][:19],
                alert,
                f"{stream['histogram']}@{stream['cohort']}",
                str(stream["windows"]),
                f"{stream['statistic']:.1f}",
                f"{stream['p_value']:.4f}" if stream["judged"] else "not judged",
                f"{stream['psi']:.3f}",
                f"{stream['js_distance']:.3f}",
                "yes" if stream["flagged"] else "",
            )
    return table


@drift_app.command("report")
def report(
    release: Annotated[str, typer.Option(help="digest of a release")],
    url: Url,
    token: Token,
    history: Annotated[int, typer.Option(help="newest windows to show")] = 12,
) -> None:
    """Per window and stream: statistic, p-value, debiased PSI and JS distance, alert."""
    with AdminClient(url, token) as client:
        try:
            drift = client.telemetry_drift(release, history=history)
        except ApiError as exc:
            _err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from exc
    if not drift["windows"]:
        _out.print("no released window with a registered reference yet")
        return
    _out.print(drift_table(drift))
