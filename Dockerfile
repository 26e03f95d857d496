# Convoi worker: the livekit-agents worker that conducts calls (`convoi-worker start`).
# Operations (scaling, secrets, draining, health, metrics, volumes): docs/operations.md.
# Checked without a Docker engine by scripts/dockerfile-check (hadolint, then these steps in a
# fresh venv and a worker start against an unreachable LiveKit).
#
#   docker build -t convoi-worker .
#   docker run --env-file worker.env -p 8081:8081 -p 9100:9100 -v convoi-outbox:/var/lib/convoi convoi-worker

FROM python:3.11-slim

# Runtime system packages: none beyond the base image. Every Python dependency ships as a
# manylinux wheel that bundles its native libraries (PyAV, onnxruntime, livekit's FFI); what they
# still link against (glibc, libgcc-s1, libstdc++6, zlib1g) is in python:3.11-slim, which also
# has ca-certificates. scripts/dockerfile-check verifies that list. libportaudio2 is only for
# `convoi-worker console` (a developer's terminal), espeak-ng/sox/redis/SIPp only for the devstack.
# ORT_DISABLE_TELEMETRY: onnxruntime (silero VAD) would otherwise try to persist a telemetry device
# id under $HOME, which the worker's user cannot write, and warn about it in every process.

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ORT_DISABLE_TELEMETRY=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /app

# The project without its dev dependencies. The silero VAD model ships inside the
# livekit-plugins-silero wheel (livekit/plugins/silero/resources/silero_vad.onnx): nothing is
# downloaded when the worker runs. `download-files` runs every installed plugin's download step
# at build time (a no-op for today's plugins, needed if one that downloads is added).
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . \
    && python -m livekit.agents download-files \
    && python -c "import importlib.resources as r; m = r.files('livekit.plugins.silero.resources') / 'silero_vad.onnx'; assert m.is_file() and len(m.read_bytes()) > 1000000, m; print('silero VAD model:', m)"

# Default definitions; mount your own over /app/agents_config (or set CONVOI_CONFIG_DIR).
COPY agents_config ./agents_config

RUN groupadd --system --gid 10001 convoi \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin convoi \
    && mkdir -p /var/lib/convoi /tmp/convoi-metrics \
    && chown 10001:10001 /var/lib/convoi /tmp/convoi-metrics

ENV CONVOI_CONFIG_DIR=/app/agents_config \
    CONVOI_OUTBOX_PATH=/var/lib/convoi/outbox.sqlite3 \
    CONVOI_KNOWLEDGE_DIR=/var/lib/convoi/knowledge \
    CONVOI_HEALTH_PORT=8081 \
    CONVOI_METRICS_PORT=9100 \
    CONVOI_METRICS_DIR=/tmp/convoi-metrics

# The outbox of undelivered call events must survive restarts and redeploys.
VOLUME ["/var/lib/convoi"]

USER 10001:10001

# 8081: health (GET / answers 200 "OK"; 503 once the LiveKit connection has failed for good).
# 9100: Prometheus metrics (GET /metrics).
EXPOSE 8081 9100

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/' % os.environ.get('CONVOI_HEALTH_PORT', '8081'), timeout=4)"]

# First SIGTERM drains (no new calls; waits for running calls), a second one exits at once.
STOPSIGNAL SIGTERM
CMD ["convoi-worker", "start"]
