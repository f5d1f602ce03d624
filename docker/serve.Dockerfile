# `lfm-retrieval serve` in a container: the pinned 'latest' stack (CPU torch) plus the project.
# Build from the repository root (docker compose does: see docker-compose.yml, profile "serve").
# torch==...+cpu comes from PyTorch's CPU wheel index: pass it as the PIP_EXTRA_INDEX_URL build arg.
FROM python:3.11.13-slim-bookworm

ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL} PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
WORKDIR /app
COPY stacks/latest.txt stacks/latest.txt
RUN pip install -r stacks/latest.txt
COPY core core
COPY integrations integrations
RUN pip install --no-deps ./core ./integrations/qdrant ./integrations/pgvector ./integrations/milvus

EXPOSE 8080
# SIGTERM (docker stop) finishes in-flight requests, then the queued queries, then exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["lfm-retrieval", "serve", "--host", "0.0.0.0", "--port", "8080"]
