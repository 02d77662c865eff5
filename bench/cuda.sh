#!/usr/bin/env bash
# The CUDA measurements behind the README's GPU tables, one step at a time (each fits in ~10 minutes on an H100):
#
#   bash bench/cuda.sh tests        # the CUDA tests: QLoRA rounds in bf16 autocast, the static backend, swaps
#   bash bench/cuda.sh sampling     # bench.sampling on a random-init 1.7B llama (bf16, static backend)
#   bash bench/cuda.sh dpo-1.7b     # bench.dpo_vs_trl, 1.7B shape, 256 pairs
#   bash bench/cuda.sh dpo-8b       # bench.dpo_vs_trl, 8B shape, 128 pairs
#   bash bench/cuda.sh dpo-8b-24g   # the same capped at 24 GiB of GPU memory: does an 8B round fit a 24 GB card?
#   bash bench/cuda.sh tiny         # a quick check of this script: bench.dpo_vs_trl on the tiny shape (CPU too)
#
# Each benchmark's last line (one JSON object) is appended to ${RESULTS:-bench-cuda.jsonl}. Without the default
# model on disk, point TOKENIZER at a folder holding its tokenizer files (tokenizer.json, tokenizer_config.json,
# chat_template.jinja); tests read PREFLOOP_TOKENIZER_DIR for the same.
set -euo pipefail
cd "$(dirname "$0")/.."
results=${RESULTS:-bench-cuda.jsonl}
tokenizer=()
if [[ -n "${TOKENIZER:-}" ]]; then
    tokenizer=(--tokenizer "$TOKENIZER")
    export PREFLOOP_TOKENIZER_DIR=${PREFLOOP_TOKENIZER_DIR:-$TOKENIZER}
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

bench() {
    local log
    log=$(mktemp)
    python -m "$@" "${tokenizer[@]}" 2>&1 | tee "$log" | grep -v -i -e warn -e "it/s]" -e "examples/s]"
    tail -n 1 "$log" >>"$results"
}

case "${1:-}" in
    tests) python -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_policy.py ;;
    sampling) bench bench.sampling --model 1.7b --batch-prompts 16 --labelers 2 --votes 8 --warmup-s 20 ;;
    dpo-1.7b) bench bench.dpo_vs_trl --model 1.7b --pairs 256 ;;
    dpo-8b) bench bench.dpo_vs_trl --model 8b --pairs 128 ;;
    dpo-8b-24g) bench bench.dpo_vs_trl --model 8b --pairs 64 --memory-limit-gib 24 ;;
    tiny) bench bench.dpo_vs_trl --model tiny --pairs 4 --max-length 128 ;;
    *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
