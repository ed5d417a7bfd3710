#!/usr/bin/env bash
# Downloads into .whl/ (ignored by git) the wheels that bench/gpu_session.sh installs on a lent GPU
# machine (the `device` tool): its image has Python 3.12, torch with CUDA, transformers, accelerate
# and peft, but no trl and no datasets, and it cannot reach PyPI. The versions are this
# repository's pins (requirements.txt), so the GPU runs the code the CPU tests run; huggingface_hub
# stays the image's (1.33 in 2026-11: within transformers' and datasets' >= 1.31; 2.x needs httpx2).
#   bash bench/gpu_wheels.sh          (here, once a session: ~15 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    trl==1.16.0 transformers==5.24.0 peft==0.21.2 accelerate==1.15.0 datasets==5.2.0 dill==0.4.1 \
    multiprocess==0.70.19 tokenizers==0.23.3 safetensors==0.8.0 fsspec==2026.9.0
ls -l .whl
du -sh .whl
