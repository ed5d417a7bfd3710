#!/bin/bash
# Issue 11, item 5: the phenopacket benchmark's wall time at two commits, one run after the other,
# on the same config, with the same virtual environment. Measures; asserts nothing.
#
#   bench/benchmark_walltime.sh OLD NEW WORKDIR [OVERLAY.yaml ...]
#   bench/benchmark_walltime.sh 827d17e HEAD <work> <work>/overlay.yaml
#
# Each commit gets a git worktree (WORKDIR/old, WORKDIR/new) and a fresh run folder (WORKDIR/run-old,
# WORKDIR/run-new) holding links to that worktree's config/ and to the phenopacket-store snapshot
# (STORE, default ../shared/phenopacket-store), as `make benchmark` sets them up. Snakemake runs with
# --cores ${CORES:-2}, the worktree's Snakefile and config/rare_disease/benchmark.yaml, then the overlays; the
# worktree comes first on PYTHONPATH, so its own `mint` package runs (not the editable install).
# Overlays named in NEW_ONLY (e.g. one that switches off a step the old commit did not have) go to
# the new commit only. The wall times go to WORKDIR/times.txt; per-step times and peaks then come from
#   python bench/run_resources.py WORKDIR/run-old   (and run-new)
# `make benchmark`'s second call (the HTML report) is left out at both commits. SIDES=new runs the new
# commit only (the old side's wall time, measured once, does not change: 827d17e took 2,791 s here).
set -u
old=$1 new=$2 work=$3; shift 3
repo=$(cd "$(dirname "$0")/.." && pwd)
store=${STORE:-$repo/../shared/phenopacket-store}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_WAIT_POLICY=PASSIVE
export PATH=$repo/.venv/bin:$PATH
mkdir -p "$work"
for side in old new; do
  commit=${!side}
  [ -d "$work/$side" ] || git -C "$repo" worktree add --detach "$work/$side" "$commit"
  mkdir -p "$work/run-$side"
  ln -sfn "$work/$side/config" "$work/run-$side/config"
  ln -sfn "$store" "$work/run-$side/phenopacket-store"
  mkdir -p "$work/$side/data" && ln -sfn "$store" "$work/$side/data/phenopacket-store"  # config-relative paths
done
for side in ${SIDES:-old new}; do
  extra=()
  [ "$side" = new ] && [ -n "${NEW_ONLY:-}" ] && extra=($NEW_ONLY)
  cd "$work/run-$side" || exit 1
  start=$(date +%s.%N)
  config=$work/$side/config/rare_disease/benchmark.yaml
  [ -f "$config" ] || config=$work/$side/config/benchmark.yaml  # a commit before config/<application>/
  PYTHONPATH=$work/$side snakemake --cores "${CORES:-2}" --snakefile "$work/$side/Snakefile" \
    --configfile "$config" "$@" "${extra[@]}" > run.log 2>&1
  rc=$?
  end=$(date +%s.%N)
  echo "$side $(git -C "$work/$side" rev-parse --short HEAD) rc=$rc wall_s=$(echo "$end - $start" | bc)" >> "$work/times.txt"
done
cat "$work/times.txt"
