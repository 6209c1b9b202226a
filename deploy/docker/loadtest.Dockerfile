# syntax=docker/dockerfile:1
# hepsonic load generator: locust + the thin client, running the scenarios in loadtests/ against the gateway.
# Build from the repository root:  docker build -f deploy/docker/loadtest.Dockerfile -t hepsonic-loadtest .
# loadtests/ is copied in, and compose also mounts it so edits need no rebuild.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.m[d] ./
COPY clients/ clients/
COPY server/ server/
COPY models/ models/
RUN pip install ./clients '.[loadtest]'

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="hepsonic-loadtest" \
      org.opencontainers.image.description="locust scenarios for a hepsonic gateway" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib
RUN groupadd --system --gid 10001 hepsonic \
 && useradd --system --uid 10001 --gid hepsonic --no-create-home --shell /usr/sbin/nologin hepsonic
COPY --from=build /opt/venv /opt/venv
WORKDIR /work
COPY loadtests/ loadtests/
USER 10001:10001
EXPOSE 8089
ENTRYPOINT ["locust"]
CMD ["--config", "loadtests/locust.conf"]
