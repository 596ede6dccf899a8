# The offline lab (CPU): `lgenode pipeline ...` — simulate, render, pix2pix/CycleGAN, train,
# evaluate, evaluate-synthesis, experiment. Build from the repository root:
#   docker build -f docker/pipeline.Dockerfile -t lgenode-pipeline .
# Run with the data mounted read-only at /data and an output folder at /runs, e.g.
#   docker run --rm -v /path/to/shared/data:/data:ro -v $PWD/runs:/runs lgenode-pipeline \
#       simulate --strategy hybrid --n 1000 --render --out /runs/sim/hybrid
# EMIDEC and MyoPS are non-commercial/research data: the image never contains them, and
# what it produces from them inherits their terms.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 \
    LGENODE_DATA_DIR=/data KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 \
    MPLBACKEND=Agg
WORKDIR /opt/lgenode

# TensorFlow (CPU), Keras 3, tf2onnx and scikit-image: the `train` extra.
COPY pyproject.toml README.md ./
COPY lgenode ./lgenode
COPY models ./models
COPY pipeline ./pipeline
COPY dicomstudy ./dicomstudy
COPY node ./node
RUN pip install ".[train]" && useradd --system --home /runs lab && mkdir -p /runs /data \
    && chown lab /runs

USER lab
WORKDIR /runs
VOLUME ["/runs"]
ENTRYPOINT ["lgenode", "pipeline"]
CMD ["--help"]
