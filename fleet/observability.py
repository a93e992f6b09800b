"""structlog JSON logs and Prometheus metrics, configured once by the composition root.

Log-level policy (after aiocoap): DEBUG normal operation, INFO expected but interesting
(a release registered, a device converged), WARNING a misbehaving peer (forged status,
malformed message), ERROR our own bug.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics", "configure_logging"]


_SHARED_PROCESSORS: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]
# What Alembic says each time a migration context is opened: once per /readyz, since
# readiness compares the schema's heads; its migration steps still show.
_ALEMBIC_CHATTER = frozenset({"Context impl %s.", "Will assume %s DDL."})


def _not_alembic_chatter(record: logging.LogRecord) -> bool:
    return record.msg not in _ALEMBIC_CHATTER


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr, for structlog's loggers and the standard library's alike
    (uvicorn, Alembic, aiocoap, paho), so a log shipper reads one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*_SHARED_PROCESSORS, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    alembic = logging.getLogger("alembic.runtime.migration")
    if _not_alembic_chatter not in alembic.filters:
        alembic.addFilter(_not_alembic_chatter)
    structlog.configure(
        processors=[
            *_SHARED_PROCESSORS,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


@dataclass
class Metrics:
    """One registry per server instance, so tests can build many servers in one process."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.mqtt_messages = Counter(
            "fleet_mqtt_messages", "device messages received", ["kind"], registry=r
        )
        self.device_messages_dropped = Counter(
            "fleet_device_messages_dropped",
            "device messages refused (forged, replayed, malformed, unknown device, over budget)",
            ["kind", "reason"],
            registry=r,
        )
        self.manifests_published = Counter(
            "fleet_director_manifests_published", "director manifests published", registry=r
        )
        self.outbox_pending = Gauge(
            "fleet_outbox_pending", "director manifests not yet acknowledged", registry=r
        )
        self.broker_account_changes_pending = Gauge(
            "fleet_broker_account_changes_pending",
            "device broker login changes queued but not yet applied to the broker",
            registry=r,
        )
        self.broker_account_changes_applied = Counter(
            "fleet_broker_account_changes_applied",
            "device broker login changes the broker confirmed",
            registry=r,
        )
        self.device_states = Counter(
            "fleet_device_status", "status reports accepted by state", ["state"], registry=r
        )
        self.status_reports_late = Counter(
            "fleet_status_reports_late",
            "status reports recorded in the history after a later report of the same device",
            registry=r,
        )
        self.coap_requests = Counter(
            "fleet_coap_requests", "CoAP requests by first path segment", ["resource"], registry=r
        )
        self.coap_errors = Counter(
            "fleet_coap_errors",
            "CoAP requests answered 4.xx/5.xx",
            ["resource", "code"],
            registry=r,
        )
        self.coap_malformed = Counter(
            "fleet_coap_malformed", "datagrams that are not CoAP messages", registry=r
        )
        self.coap_notifications = Counter(
            "fleet_coap_notifications", "CoAP observe notifications triggered", registry=r
        )
        self.coap_telemetry_accepted = Counter(
            "fleet_coap_telemetry_accepted",
            "telemetry whose signature verified on CoAP, queued for ingestion",
            registry=r,
        )
        self.worker_failures = Counter(
            "fleet_worker_failures",
            "unexpected errors in a background worker's step (the step is retried)",
            ["worker"],
            registry=r,
        )
        self.telemetry_ingested = Counter(
            "fleet_telemetry_ingested", "telemetry reports added to an aggregate", registry=r
        )
        self.rate_limited = Counter(
            "fleet_rate_limited",
            "requests or device messages refused by a rate limit (docs/server.md)",
            ["scope"],  # token, address, device_mqtt, device_coap
            registry=r,
        )
        self.http_requests = Histogram(
            "fleet_http_request_seconds",
            "admin API latency",
            ["method", "route", "status"],
            registry=r,
        )
