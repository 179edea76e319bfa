#!/usr/bin/env bash
# The README's commands on a GPU, through the `device` tool (OUT = folder for what comes back):
#   bash experiments/gpu_check.sh
# builds the demo's synthetic set, runs `make demo`'s inference and plot with checkpoints/demo on the GPU,
# then the real-use path with MERT-95M's architecture (random weights: no hub here): a short
# `activity.train` run with a frozen front end, its report and its plot. Times each step.
# Needs the wheels in .whl/ that experiments/gpu_round.sh's header lists.
set -u
PY=${PY:-python3}
WORK=${WORK:-/tmp/gpu-check}
OUT=${OUT:-$WORK/out}
STEPS=${STEPS:-150}
mkdir -p "$WORK" "$OUT"
if [ -z "${SKIP_WHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then  # packages the GPU image lacks, carried as wheels
  mkdir -p /tmp/site
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || for w in .whl/*.whl; do $PY -m zipfile -e "$w" /tmp/site; done
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
timed() {  # label, command...
  local t=$(date +%s.%N); "${@:2}" >"$OUT/$1.log" 2>&1; local rc=$?
  awk -v l="$1" -v rc="$rc" -v t0="$t" -v t1="$(date +%s.%N)" 'BEGIN { printf "%s: exit %d, %.1f s\n", l, rc, t1 - t0 }' | tee -a "$OUT/check.log"
}
date -u +%FT%TZ | tee "$OUT/check.log"; nvidia-smi -L | tee -a "$OUT/check.log"
timed synth $PY -m activity.synth --out "$WORK/demo" --quiet
timed infer-demo $PY -m activity.infer --ckpt checkpoints/demo --data "$WORK/demo/slakh" --out "$WORK/reports"
timed plot-demo $PY plot_pianoroll.py --track Track01950 --ckpt checkpoints/demo --test-track-dir "$WORK/demo/test_track" --save-dir "$OUT"
timed train-95m $PY -m activity.train --data "$WORK/demo/slakh" --encoder mert-v1-95m-random --freeze-feature-extractor \
  --out "$WORK/r95" --batch-size 16 --epochs 100 --max-steps "$STEPS" --num-workers 8 --quiet
timed infer-95m $PY -m activity.infer --ckpt "$WORK/r95/best" --data "$WORK/demo/slakh" --out "$WORK/reports95"
timed plot-95m $PY plot_pianoroll.py --track Track01950 --ckpt "$WORK/r95/best" --test-track-dir "$WORK/demo/test_track" --save-dir "$WORK/plots95"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$OUT/check.log"
for f in infer-demo train-95m infer-95m; do echo "== $f"; tail -n 25 "$OUT/$f.log"; done
