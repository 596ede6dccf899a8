# The LGE AI node (CPU). Build from the repository root:
#   docker build -f docker/node.Dockerfile -t lgenode .
# Runs `lgenode serve` with /config/node.yaml; received instances and the SQLite database live in /data.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/lgenode

# Only the serving runtime (ONNX Runtime); TensorFlow is for training and is not installed, and
# neither is the lab (`pipeline`): `lgenode` loads it only for `lgenode pipeline ...`.
COPY pyproject.toml README.md ./
COPY lgenode ./lgenode
COPY node ./node
COPY models ./models
RUN pip install ".[postgres]" && useradd --system --home /data lgenode && mkdir -p /data /config \
    && chown lgenode /data

COPY docker/node.yaml /config/node.yaml
USER lgenode
VOLUME ["/data"]
EXPOSE 11112 8080
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)" || exit 1
ENTRYPOINT ["lgenode"]
CMD ["serve", "--config", "/config/node.yaml"]
