#!/usr/bin/env bash
# Does ONE refresh learn? (issue 17's learning figure, CPU.) One `kbloop simulate` round with the
# default algorithm on a fresh data dir, then the simulated employees judge the refreshed candidate
# (v0002) against the base (v0001) on the 48 questions no round asks (bench/questions/extra-heldout.jsonl).
#
#   bench/learning.sh SEED [PREFERENCE] [ALGO]      e.g. bench/learning.sh 0 concise-cited ppo
#
# Writes bench/results/learning-<algo>-<preference>-s<seed>.json (the round) and
# bench/results/learning-<algo>-<preference>-s<seed>-judge.json (the held-out win rate, 95% CI).
# GOLDEN names the question bank (default Acme's golden set). Extra `simulate` options can be passed in
# SIMULATE_ARGS, extra `simulate-judge` options in JUDGE_ARGS. About an hour on 2 cores.
set -euo pipefail
seed=${1:?usage: bench/learning.sh SEED [PREFERENCE] [ALGO]}
preference=${2:-concise-cited}
algo=${3:-ppo}
golden=${GOLDEN:-examples/acme-handbook/golden.jsonl}  # the question bank the rounds ask
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
name=learning-$algo-$preference-s$seed
data=${DATA_DIR:-$(mktemp -d -t "kbloop-$name-XXXX")}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false KBLOOP_TRAINER_AUTOSTART=false
# The employees judge the models' own answers: with the answer checks on, most answers of both models are
# the same extractive fallback, and a side by side of two identical texts is a tie (83 of 99 choices in
# a first run), so neither the feedback nor the judgement would say anything about the model.
export KBLOOP_ANSWER_CHECKS=${KBLOOP_ANSWER_CHECKS:-false}
cd "$repo"
echo "data dir: $data" >&2
KBLOOP_DATA_DIR=$data "$python" -m cli.app ingest --quiet "${CORPUS:-examples/acme-handbook}"
# shellcheck disable=SC2086
"$python" -m cli.app simulate --data-dir "$data" --rounds 1 --questions 0 --asks 3 --heldout 16 \
    --heldout-samples 0 --eval-limit 32 --golden "$golden" --algo "$algo" --preference "$preference" --seed "$seed" \
    --out "bench/results/$name.json" ${SIMULATE_ARGS:-}
# shellcheck disable=SC2086
"$python" -m cli.app simulate-judge v0002 v0001 --data-dir "$data" --preference "$preference" \
    --seed "$seed" --golden bench/questions/extra-heldout.jsonl --concurrency 2 \
    --out "bench/results/$name-judge.json" ${JUDGE_ARGS:-}
