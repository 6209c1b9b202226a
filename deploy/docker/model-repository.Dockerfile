# syntax=docker/dockerfile:1
# A tiny image carrying model_repository/ at /model_repository, for the Helm chart's
# `triton.modelRepository.source=initContainer` (the init container copies it into an emptyDir).
# Build from the repository root:  docker build -f deploy/docker/model-repository.Dockerfile -t hepsonic-models .
FROM busybox:1.36
COPY model_repository/ /model_repository/
USER 65534:65534
