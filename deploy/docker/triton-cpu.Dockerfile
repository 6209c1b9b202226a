# syntax=docker/dockerfile:1
# hepsonic CPU Triton: the same embedded runtime as `make serve` (the real tritonserver 2.51 from the
# nvidia-pytriton wheel, python backend + onnxruntime), for machines without an NVIDIA GPU.
# Build from the repository root:  docker build -f deploy/docker/triton-cpu.Dockerfile -t hepsonic-triton-cpu .
# Mount a model repository at /models (read-only is fine: the runtime repository is derived elsewhere).

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
RUN pip install ./clients '.[triton]'

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="hepsonic-triton-cpu" \
      org.opencontainers.image.description="NVIDIA Triton 2.51 (pytriton wheel) on CPU serving a hepsonic model repository" \
      org.opencontainers.image.licenses="Apache-2.0"
# libstdc++6/libexpat1: needed by the python-backend stub next to the wheel's vendored libraries;
# curl: the readiness probe and the compose healthcheck (same command as on NVIDIA's image).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libstdc++6 libexpat1 curl \
 && rm -rf /var/lib/apt/lists/*
# The venv's bin/ first on PATH: the python-backend stub imports numpy/onnxruntime from the Python it finds first.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN groupadd --system --gid 10001 hepsonic \
 && useradd --system --uid 10001 --gid hepsonic --no-create-home --shell /usr/sbin/nologin hepsonic
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD ["curl", "-fsS", "http://127.0.0.1:8000/v2/health/ready"]
ENTRYPOINT ["hepsonic-triton"]
CMD ["--host", "0.0.0.0", "--repository", "/models", "--http-port", "8000", "--grpc-port", "8001", "--metrics-port", "8002"]
