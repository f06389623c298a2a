#!/usr/bin/env bash
# Side by side on the same feedback (issue 17): after `bench/learning.sh` has run one round on DATA_DIR,
# train DPO on that round's pairs and KTO on its thumbs, each from the base (v0001) and on exactly the
# feedback the round's refresh read (exported up to its snapshot), and judge each against v0001 on the 48
# questions no round asks, like the refresh's PPO candidate.
#
#   bench/side_by_side.sh DATA_DIR SEED [PREFERENCE]
#
# Writes bench/results/side-<algo>-<preference>-s<seed>-judge.json for algo in dpo, kto. Extra
# `simulate-judge` options in JUDGE_ARGS.
set -euo pipefail
data=${1:?usage: bench/side_by_side.sh DATA_DIR SEED [PREFERENCE]}
seed=${2:?usage: bench/side_by_side.sh DATA_DIR SEED [PREFERENCE]}
preference=${3:-concise-cited}
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false KBLOOP_TRAINER_AUTOSTART=false
export KBLOOP_DATA_DIR=$data KBLOOP_ANSWER_CHECKS=${KBLOOP_ANSWER_CHECKS:-false}
cd "$repo"
# the snapshot the round's refresh read: its feedback, and nothing the canary trial added afterwards
until=$("$python" - "$data" <<'EOF'
import json, pathlib, sys
runs = sorted(pathlib.Path(sys.argv[1], "runs").glob("simulate-r1-*/manifest.json"))
if not runs:
    sys.exit(f"no round-1 refresh under {sys.argv[1]}/runs: run bench/learning.sh first")
print(json.loads(runs[0].read_text())["snapshot"]["taken_at"])
EOF
)
echo "feedback up to $until" >&2
for algo in dpo kto; do
    kind=$([ "$algo" = dpo ] && echo preferences || echo thumbs)
    "$python" -m cli.app export "$kind" --until "$until" --model-version v0001 --out "$data/side-$algo.jsonl"
    log=$data/side-$algo.log
    "$python" -m cli.app train "$algo" --from-jsonl "$data/side-$algo.jsonl" --parent v0001 \
        --seed "$seed" --output "$data/runs/side-$algo" 2>&1 | tee "$log"
    version=$(grep -o 'registered v[0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    if [ -z "$version" ]; then
        echo "$algo: no candidate registered (see $log)" >&2
        continue
    fi
    # shellcheck disable=SC2086
    "$python" -m cli.app simulate-judge "$version" v0001 --data-dir "$data" --preference "$preference" \
        --seed "$seed" --golden bench/questions/extra-heldout.jsonl --concurrency 2 --samples 0 \
        --out "bench/results/side-$algo-$preference-s$seed-judge.json" ${JUDGE_ARGS:-}
done
