"""The operator CLI: ``fleet serve``, ``fleet migrate``, ``fleet token``, ``fleet broker``,
``fleet demo``, ``fleet model``."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fleet.device_cli import device_app
from fleet.drift_cli import drift_app
from fleet.rollout_cli import rollout_app
from fleet.settings import Settings
from fleet.toolkit.cli import model_app

__all__ = ["app", "main"]

app = typer.Typer(no_args_is_help=True, help="tinyfleet server and operator commands")
token_app = typer.Typer(no_args_is_help=True, help="API tokens (written straight to the database)")
app.add_typer(token_app, name="token")
# Training imports TensorFlow (the ml extra) only when `fleet model train` runs.
app.add_typer(model_app, name="model")
app.add_typer(rollout_app, name="rollout")
app.add_typer(drift_app, name="drift")
app.add_typer(device_app, name="device")
broker_app = typer.Typer(no_args_is_help=True, help="the MQTT broker the server manages")
app.add_typer(broker_app, name="broker")
_err = Console(stderr=True)


def _settings(data_dir: Path | None) -> Settings:
    try:
        return Settings(data_dir=data_dir) if data_dir else Settings()
    except ValueError as exc:
        _err.print(f"[red]error:[/] invalid settings: {exc}")
        raise typer.Exit(2) from exc


DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="overrides FLEET_DATA_DIR", show_default=False)
]


@app.command()
def serve(
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="overrides FLEET_HTTP_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="overrides FLEET_HTTP_PORT")] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR")] = "INFO",
    shutdown_seconds: Annotated[
        int, typer.Option(min=0, help="on SIGTERM, how long requests in flight may take")
    ] = 3,
    drain_seconds: Annotated[
        float,
        typer.Option(
            min=0, help="then how long ingesting received reports and publishing manifests may"
        ),
    ] = 5.0,
) -> None:
    """Run the admin API, the MQTT director and the device inbox in one process.

    SIGTERM stops it cleanly and exits 0: requests in flight finish, device intake
    stops, what was received is ingested and queued manifests are published
    (docs/server.md "Stopping")."""
    import uvicorn

    from fleet.app import ConfigurationError, build_server
    from fleet.observability import configure_logging
    from fleet.root_store import RootStoreError
    from fleet.transports.embedded_broker import BrokerStartError
    from fleet.transports.errors import TransportError

    configure_logging(log_level.upper())
    settings = _settings(data_dir)
    try:
        server = build_server(settings)
        server.start()
    except (ConfigurationError, RootStoreError, BrokerStartError, TransportError) as exc:
        _err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    # SIGTERM is a request to stop: uvicorn stops accepting connections and finishes the
    # requests in flight (up to --shutdown-seconds), then the server drains and the
    # process exits 0. uvicorn re-raises the signal once it has shut down; ignoring that
    # second delivery lets the drain below run to its end.
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        uvicorn.run(
            server.api,
            host=host or settings.http_host,
            port=port if port is not None else settings.http_port,
            log_level=log_level.lower(),
            timeout_graceful_shutdown=shutdown_seconds,
            # Our JSON handler (configure_logging) instead of uvicorn's text formats; the
            # API's own http_request line, with the request id, replaces the access log.
            log_config=None,
            access_log=False,
        )
    finally:
        server.stop(drain_timeout=drain_seconds)
        signal.signal(signal.SIGTERM, previous)


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Bring the database (FLEET_DATABASE_URL) to the newest schema, then exit.

    ``fleet serve`` migrates at start as well; this runs the migrations alone, once,
    before replicas start (a deployment's one-off migration job)."""
    from fleet.store import upgrade

    settings = _settings(data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="a label for the token's holder")],
    role: Annotated[str, typer.Option(help="admin, operator or viewer")] = "operator",
    data_dir: DataDir = None,
) -> None:
    """Create an API token and print its secret (shown once, stored as a hash)."""
    from fleet.app import utc_now
    from fleet.domain.records import Role
    from fleet.services.tokens import create_token
    from fleet.store import SqlUnitOfWork, make_engine, make_session_factory, upgrade

    try:
        parsed_role = Role(role)
    except ValueError as exc:
        _err.print(f"[red]error:[/] role must be admin, operator or viewer, not {role!r}")
        raise typer.Exit(2) from exc
    settings = _settings(data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    sessions = make_session_factory(make_engine(settings.resolved_database_url))
    secret, _ = create_token(
        SqlUnitOfWork(sessions), name=name, role=parsed_role, actor="cli", now=utc_now()
    )
    sys.stdout.write(secret + "\n")


@broker_app.command("dynsec-config")
def broker_dynsec_config(
    out: Annotated[Path, typer.Option(help="the plugin's config file to create (0600)")],
    password_file: Annotated[
        Path, typer.Option(help="a file holding the server's broker password (one line)")
    ],
    username: Annotated[str, typer.Option(help="the server replicas' broker login")] = (
        "fleet-server"
    ),
) -> None:
    """Write the starting file of Mosquitto's dynamic security plugin: the server's own
    login (all of tf/, shared subscriptions, the control topic) and deny-all defaults.
    The server adds each device's login itself (FLEET_BROKER_ACCOUNTS=dynsec); give it
    the same login in FLEET_MQTT_URL (docs/server.md "Broker accounts")."""
    import json
    import os

    from fleet.transports.dynsec import initial_config

    try:
        password = password_file.read_text().strip()
    except OSError as exc:
        _err.print(f"[red]error:[/] cannot read {password_file}: {exc.strerror}")
        raise typer.Exit(2) from exc
    if len(password) < 16:
        _err.print("[red]error:[/] the server's broker password needs at least 16 characters")
        raise typer.Exit(2)
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        _err.print(f"[red]error:[/] {out} exists; the broker owns it once it runs")
        raise typer.Exit(2) from exc
    with os.fdopen(fd, "w") as file:
        json.dump(initial_config(username, password), file, indent=1)
    _err.print(f"wrote {out}")


@app.command()
def demo(
    devices: Annotated[int, typer.Option(min=1, max=2000, help="simulated devices")] = 50,
    data_dir: Annotated[
        Path | None, typer.Option(help="keep the demo's state here (default: a temp dir)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the fleet")] = 120.0,
) -> None:
    """Start a server on embedded defaults, enroll a simulated fleet, roll a signed release."""
    from fleet.demo import run_demo

    raise typer.Exit(run_demo(devices=devices, data_dir=data_dir, timeout=timeout))


def main(argv: list[str] | None = None) -> None:
    app(args=argv)


if __name__ == "__main__":
    main()
