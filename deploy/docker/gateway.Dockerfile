# syntax=docker/dockerfile:1
# hepsonic gateway: the front door (KServe v2 over HTTP :8080 and gRPC :8081, Prometheus /metrics).
# Build from the repository root:  docker build -f deploy/docker/gateway.Dockerfile -t hepsonic-gateway .
# Only the gateway's dependencies go in (`pip install ./clients .`): no Triton, no onnxruntime, no torch.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# README.m[d]: the glob lets the build go on while the top-level README does not exist yet.
COPY pyproject.toml README.m[d] ./
COPY clients/ clients/
COPY server/ server/
COPY models/ models/
# Non-editable installs, so the runtime stage needs only /opt/venv.
RUN pip install ./clients .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="hepsonic-gateway" \
      org.opencontainers.image.description="KServe v2 gateway in front of NVIDIA Triton replicas" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HEPSONIC_GATEWAY_HOST=0.0.0.0 \
    HEPSONIC_GATEWAY_HTTP_PORT=8080 \
    HEPSONIC_GATEWAY_GRPC_PORT=8081
# A fixed numeric uid, so Kubernetes `runAsNonRoot` can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 hepsonic \
 && useradd --system --uid 10001 --gid hepsonic --no-create-home --shell /usr/sbin/nologin hepsonic
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8080 8081
# Open endpoint (no auth) by contract; urllib keeps curl out of the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v2/health/live' % os.environ.get('HEPSONIC_GATEWAY_HTTP_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["hepsonic-gateway"]
