# penalty-service image: stage 1 builds the wheel, stage 2 installs only that wheel and its
# runtime dependencies into a slim Python (no compilers, no dev extras, no source tree).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY service ./service
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 penalty \
 && useradd --system --uid 10001 --gid penalty --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin penalty
RUN --mount=type=bind,from=build,source=/dist,target=/dist \
    pip install --no-cache-dir /dist/*.whl
# Settings (see README "Operating it"); every one can be overridden with `docker run -e`.
# The root filesystem may be read-only (compose, Kubernetes): the service writes only to /tmp
# (Prometheus's multiprocess files when PENALTY_WORKERS > 1), which they mount as tmpfs.
ENV PENALTY_HOST=0.0.0.0 \
    PENALTY_PORT=8000 \
    PENALTY_WORKERS=1 \
    PENALTY_LOG_LEVEL=info
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PENALTY_PORT', '8000') + '/healthz', timeout=2)"]
CMD ["python", "-m", "service"]
