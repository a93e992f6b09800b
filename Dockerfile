# syntax=docker/dockerfile:1
# tinyfleet server image: the wheel with only the `server` extra, at the versions (and
# hashes) of requirements/server.lock; no TensorFlow. docs/deploy.md explains the use;
# tests/deploy/test_dockerfile.py lints this file, tests/deploy/test_image_layout.py
# installs the same files into a fresh venv and starts the server from it.
#
#   docker build -t tinyfleet .                    # the server (last stage, the default)
#   docker build --target sim -t tinyfleet-sim .   # the simulated fleet of deploy/compose.yaml
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, so this layer is rebuilt only when the lock changes. Every file
# pip fetches must match a hash of the lock.
COPY requirements/server.lock requirements/server.lock
RUN python -m venv /opt/tinyfleet \
    && /opt/tinyfleet/bin/pip install --require-hashes -r requirements/server.lock
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY signer signer
COPY device_sim device_sim
COPY fleet fleet
# fleet/transports/broker_config is a link to deploy/mosquitto (package data).
COPY deploy/mosquitto deploy/mosquitto
RUN pip wheel --no-deps --wheel-dir /dist . \
    && /opt/tinyfleet/bin/pip install --no-deps /dist/tinyfleet-*.whl \
    && /opt/tinyfleet/bin/python -c "import fleet.cli, device_sim.cli"

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/tinyfleet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 tinyfleet \
    && useradd --system --uid 10001 --gid tinyfleet --no-create-home \
        --home-dir /var/lib/tinyfleet --shell /usr/sbin/nologin tinyfleet \
    && install -d -o tinyfleet -g tinyfleet -m 0750 /var/lib/tinyfleet /var/lib/fleet-sim
COPY --from=builder /opt/tinyfleet /opt/tinyfleet

# `fleet-sim` devices enrolled against a running server (deploy/fleet-sim/entrypoint.py).
FROM runtime AS sim
COPY deploy/fleet-sim/entrypoint.py /opt/tinyfleet/share/fleet-sim-service.py
USER 10001:10001
WORKDIR /var/lib/fleet-sim
ENTRYPOINT ["python", "/opt/tinyfleet/share/fleet-sim-service.py"]

# The server: state (blobs, the pinned root chain; SQLite if no FLEET_DATABASE_URL) under
# one volume, the admin API on 8080/tcp, CoAP on 5683/udp. FLEET_MQTT_URL must name a
# broker: the image has no Mosquitto to start. `docker run IMAGE migrate` (any `fleet`
# command) replaces `serve`.
FROM runtime AS server
ENV FLEET_DATA_DIR=/var/lib/tinyfleet \
    FLEET_HTTP_HOST=0.0.0.0 \
    FLEET_HTTP_PORT=8080 \
    FLEET_COAP_HOST=0.0.0.0 \
    FLEET_COAP_PORT=5683
USER 10001:10001
WORKDIR /var/lib/tinyfleet
VOLUME ["/var/lib/tinyfleet"]
EXPOSE 8080/tcp 5683/udp
# Ready: database reachable, migrations current, broker connected. urllib, not curl, so
# the slim image needs no extra package; a non-2xx answer raises, and exits 1.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('FLEET_HTTP_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["fleet"]
CMD ["serve"]
