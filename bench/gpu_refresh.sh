#!/usr/bin/env bash
# One refresh on a GPU with no CPU caps (issue 17): a simulated round of feedback, the reward model
# trained on every pair (no step cap), group-PPO with many more episodes and the service's answer
# length, the gate, then the held-out judgement on bench/questions/extra-heldout.jsonl. Budget: 10 min
# of one H200 for the refresh itself.
#
#   bench/gpu_refresh.sh [MODEL_DIR]     MODEL_DIR: an HF instruct model folder for a larger policy
#                                        (default: the bundled SmolLM2-135M-Instruct)
#
# Needs `make install` with a CUDA torch (TORCH_SPEC=torch make install). Writes
# bench/results/gpu-refresh.json and bench/results/gpu-refresh-judge.json; prints nvidia-smi before
# and after. Set SIMULATE_ARGS to add or override `kbloop simulate` options.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
python=${PYTHON:-$repo/.venv/bin/python}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false KBLOOP_TRAINER_AUTOSTART=false
export KBLOOP_DEVICE=cuda KBLOOP_BACKEND=${KBLOOP_BACKEND:-transformers}
[ -n "${1:-}" ] && export KBLOOP_MODEL=$1
"$python" - <<'PY'
import torch, sys
if not torch.cuda.is_available():
    sys.exit("gpu_refresh.sh: no CUDA device visible to torch (install a CUDA torch: TORCH_SPEC=torch make install)")
print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
PY
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true
data=${DATA_DIR:-$(mktemp -d -t kbloop-gpu-refresh-XXXX)}
echo "data dir: $data" >&2
KBLOOP_DATA_DIR=$data "$python" -m cli.app ingest --quiet examples/acme-handbook
started=$(date +%s)
# shellcheck disable=SC2086
timeout 1500 "$python" -m cli.app simulate --data-dir "$data" --rounds 1 --questions 0 --asks 3 \
    --heldout 16 --heldout-samples 0 --golden examples/acme-handbook/golden.jsonl --max-tokens 160 \
    --ppo-iterations 24 --ppo-rollouts 16 --reward-epochs 3 --reward-max-steps 0 --concurrency 16 \
    --out bench/results/gpu-refresh.json ${SIMULATE_ARGS:-}
echo "simulate round (feedback + refresh + gate + canary): $(( $(date +%s) - started )) s" >&2
"$python" -m cli.app simulate-judge v0002 v0001 --data-dir "$data" --max-tokens 160 --concurrency 16 \
    --golden bench/questions/extra-heldout.jsonl --out bench/results/gpu-refresh-judge.json
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true
