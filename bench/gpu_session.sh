#!/usr/bin/env bash
# Issue 11 item 6 on a lent GPU, as one prepared run of the `device` tool (~6 of its 15 minutes):
#   here:    bash bench/gpu_wheels.sh
#   device:  run(command="bash bench/gpu_session.sh", carry=[".whl"], timeout_s=540)
# Installs the carried wheels, then writes under $OUT: nvidia-smi's line, and the JSON and log of
# bench.gpu_orpo_check twice: ORPO with the paper recipe's LoRA on a Llama-3.2-3B shape (the
# issue's figure), and every weight of a 1B shape (the check before 2026-12-01).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$PWD/.gpu-site" .whl/*.whl \
    || { echo "no wheels in .whl/: run bench/gpu_wheels.sh here and carry .whl" >&2; exit 1; }
export PYTHONPATH="$PWD/.gpu-site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/nvidia-smi.txt"
python3 -m pip list 2>/dev/null | grep -i -E '^(torch|transformers|trl|peft|accelerate|datasets|tokenizers|pyarrow|huggingface.hub|regex|click) ' \
    | tee "$OUT/versions.txt"
status=0
timeout 270 python3 -m bench.gpu_orpo_check --json "$OUT/gpu_orpo_3b_lora.json" 2>&1 \
    | tee "$OUT/gpu_orpo_3b_lora.log" | grep -v '^{' || status=1
timeout 150 python3 -m bench.gpu_orpo_check --shape 1b --full --json "$OUT/gpu_orpo_1b_full.json" 2>&1 \
    | tee "$OUT/gpu_orpo_1b_full.log" | grep -v '^{' || status=1
exit $status
