# syntax=docker/dockerfile:1
# Production image of the backend: `docker build -t portkeeper .`
# Runs `python -m backend --production` as a non-root user; HOST, PORT and WEB_CONCURRENCY
# (and every other setting of backend/settings.py) come from the environment.

ARG PYTHON_VERSION=3.13

# --------------------------------------------------------------------------- build
# Resolve and install the runtime dependencies into a virtualenv without pip of its own;
# only that virtualenv is copied into the runtime stage.
FROM python:${PYTHON_VERSION}-slim-trixie AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

COPY requirements.txt /tmp/requirements.txt
RUN python -m venv --without-pip /opt/venv \
    && python -m pip --python /opt/venv/bin/python install --no-cache-dir -r /tmp/requirements.txt

# --------------------------------------------------------------------------- runtime
FROM python:${PYTHON_VERSION}-slim-trixie AS runtime

# The uid/gid are numeric so that Kubernetes can verify runAsNonRoot
# (deploy/kubernetes/deployment.yaml runs as the same uid).
ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" app \
    && useradd --system --uid "${APP_UID}" --gid app --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    APP_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    WEB_CONCURRENCY=1 \
    DATA_DIR=/app/data

WORKDIR /app
COPY --from=build /opt/venv /opt/venv
# Application code stays owned by root: the server can read it, not change it.
COPY backend/ backend/
COPY utils/ utils/
# Byte-compile once at build time (PYTHONDONTWRITEBYTECODE stops it at run time);
# the data directory (the default SQLite token store) is the only place the app writes.
RUN python -m compileall -q backend utils \
    && mkdir -p /app/data \
    && chown app:app /app/data

USER ${APP_UID}:${APP_UID}

EXPOSE 8000

# Standard library only: urlopen raises (exit 1, unhealthy) on a refused connection,
# a timeout or any non-2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]

# No --host/--port/--workers here: HOST, PORT and WEB_CONCURRENCY decide.
CMD ["python", "-m", "backend", "--production"]
