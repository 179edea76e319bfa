#!/usr/bin/env bash
# One time-boxed GPU round for the demo checkpoint (issue 6), as run through the `device` tool:
#   bash experiments/gpu_round.sh            (OUT=folder for what comes back; python3 holds torch)
# 1. builds new synthetic training sets on the CPUs (seeds $SEEDS, full size, one after another on all
#    cores; no build is started after $SYNTH_START_BY s, and an unfinished one is dropped at $SYNTH_DEADLINE s),
# 2. meanwhile times training steps on the GPU (experiments/bench_train.py, one JSON line per config),
# 3. trains two arms at once from checkpoints/demo on those songs (their validation and test songs
#    too, as views, except the validation split of the first build, which scores both arms):
#      A: the shipped model as it is;  B: the same grown to $WIDE feed-forward units (activity.grow),
#    with the step count set from the measured step time so both finish before $DEADLINE s,
# 4. packs both best/ folders, the logs and history into $OUT (split in 15 MB parts: the tool returns
#    files of at most 16 MB), to be unpacked with `cat round.tar.part* | tar x`.
# Every stage has a deadline; nothing here needs the network. The same commands run on a CPU, slowly.
# The GPU image (torch 2.11, transformers 5.17, Python 3.12) lacks some packages; put their wheels in .whl/
# (git-ignored via .git/info/exclude, named in the tool's `carry`), fetched here with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     pretty_midi==0.2.11.post0 mido==1.3.3 tinysoundfont==0.3.7 soundfile==0.14.0 soxr==1.1.0 cffi pycparser \
#     importlib_resources
set -u
T0=$(date +%s)
PY=${PY:-python3}
SIZE=${SIZE:-full}
SEEDS=${SEEDS:-8 9 10}
WIDE=${WIDE:-2048}
DEADLINE=${DEADLINE:-545}          # seconds after start by which everything is packed
SYNTH_START_BY=${SYNTH_START_BY:-150}
SYNTH_DEADLINE=${SYNTH_DEADLINE:-260}
MERT_BATCH=${MERT_BATCH:-16}
BENCH_CONFIGS=${BENCH_CONFIGS:-compact-frozen-fe 95m-frozen-fe 95m 330m-frozen-fe 330m}
BATCH=${BATCH:-32}
DEVICE=${DEVICE:-cuda}
WORK=${WORK:-/tmp/gpu-round}
OUT=${OUT:-$WORK/out}
LOGS=$WORK/pack  # logs travel inside the tar: the tool returns at most 8 files
CPUS=$(nproc)
elapsed() { echo $(( $(date +%s) - T0 )); }
say() { echo "[$(elapsed) s] $*" | tee -a "$LOGS/round.log"; }
mkdir -p "$WORK" "$OUT" "$LOGS"

if [ -z "${SKIP_WHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then  # packages the GPU image lacks, carried as wheels
  mkdir -p /tmp/site
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || for w in .whl/*.whl; do $PY -m zipfile -e "$w" /tmp/site; done  # a wheel is a zip: unpacked, it imports
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
$PY -c "import torch, transformers, numpy, tinysoundfont, pretty_midi, soundfile, soxr, activity.train, activity.synth; \
print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name() if torch.cuda.is_available() else '')" 2>&1 | tee -a "$LOGS/round.log" || exit 1
say "$(date -u +%FT%TZ); cpus $CPUS; $(nvidia-smi -L 2>/dev/null | head -1)"

# 1. synthetic builds, one at a time on all CPUs but one (which runs the GPU benchmark), so that a
#    deadline cuts at most the last build
per=$(( CPUS > 1 ? CPUS - 1 : 1 ))
(
  for s in $SEEDS; do
    [ "$(elapsed)" -lt "$SYNTH_START_BY" ] || break
    $PY -m activity.synth --size "$SIZE" --seed "$s" --out "$WORK/s$s" --workers "$per" --quiet >"$LOGS/synth-s$s.log" 2>&1
    say "synth seed $s: exit $?"
  done
) &
synth_pid=$!
say "synth started: seeds $SEEDS, $per workers"

# 2. GPU step times while the CPUs render (the launch thread competes with the renderers: a lower bound)
step_s=""
for c in $BENCH_CONFIGS; do
  [ "$(elapsed)" -lt "$SYNTH_START_BY" ] || { say "bench: no time for $c"; break; }
  b=$MERT_BATCH; case $c in compact*) b=$BATCH;; esac
  $PY experiments/bench_train.py --device "$DEVICE" --batch-size "$b" --steps 10 --config "$c" \
    >>"$LOGS/bench.jsonl" 2>>"$LOGS/bench.err" || say "bench $c failed"
  say "bench $c: $(tail -1 "$LOGS/bench.jsonl")"
  if [ "$c" = compact-frozen-fe ]; then
    step_s=$($PY -c "import json,sys; r=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(r['seconds']/r['steps'])" "$LOGS/bench.jsonl" 2>/dev/null)
  fi
done
[ -n "$step_s" ] || step_s=0.1
$PY -m activity.grow --ckpt checkpoints/demo --intermediate-size "$WIDE" --out "$WORK/wide" >"$LOGS/grow.log" 2>&1 \
  || say "grow failed: $(tail -1 "$LOGS/grow.log")"

# wait for the builds; a build without manifest.json by the deadline is dropped
while kill -0 "$synth_pid" 2>/dev/null && [ "$(elapsed)" -lt "$SYNTH_DEADLINE" ]; do sleep 2; done
kill "$synth_pid" 2>/dev/null; pkill -f "activity.synth" 2>/dev/null; wait 2>/dev/null
built=(); for s in $SEEDS; do [ -f "$WORK/s$s/manifest.json" ] && built+=("$s"); done
say "synth done: built seeds ${built[*]:-none}"
[ "${#built[@]}" -ge 1 ] || { say "no build finished"; exit 1; }
first=${built[0]}
extra=()
for s in "${built[@]}"; do
  [ "$s" = "$first" ] || extra+=("$WORK/s$s/slakh")
  for split in validation test; do
    [ "$s" = "$first" ] && [ "$split" = validation ] && continue  # scores the arms
    v="$WORK/views/s$s-$split"; mkdir -p "$v"
    ln -sfn "$WORK/s$s/slakh/$split" "$v/train"
    ln -sfn "$WORK/s$s/slakh/${split}_labels.json" "$v/train_labels.json"
    ln -sfn "$WORK/s$s/slakh/midi" "$v/midi"
    extra+=("$v")
  done
done

# 3. two arms at once; steps from the measured step time (two processes share the GPU, 60 s start-up)
left=$(( DEADLINE - 40 - $(elapsed) ))
steps=$($PY -c "import sys; print(max(50, int((int(sys.argv[1]) - 90) / (2.0 * float(sys.argv[2])))))" "$left" "$step_s")
say "training: ${left} s left, step ${step_s} s -> $steps steps of $BATCH clips per arm"
workers=$(( (CPUS - 2) / 2 )); [ "$workers" -ge 1 ] || workers=1
arm() {  # name, init folder, seed
  timeout --signal=INT --kill-after=20 "$(( left - 5 ))" $PY -m activity.train --data "$WORK/s$first/slakh" \
    --extra-train "${extra[@]}" --out "$WORK/runs/$1" --init-from "$2" --freeze-feature-extractor \
    --encoder-dropout 0 --batch-size "$BATCH" --epochs 100 --max-steps "$steps" --lr-head 1.5e-3 \
    --lr-encoder 4e-4 --warmup 0.05 --frame-loss-weight 1.0 --mix-prob 0.0 --precision auto --device "$DEVICE" \
    --num-workers "$workers" --save-every 500 --seed "$3" --quiet >"$LOGS/train-$1.log" 2>&1
  echo "exit $?" >>"$LOGS/train-$1.log"
}
arm A checkpoints/demo 8 &
[ -d "$WORK/wide" ] && arm B "$WORK/wide" 8 &
wait
say "training done: A $(tail -1 "$LOGS/train-A.log"); B $(tail -1 "$LOGS/train-B.log" 2>/dev/null)"

# 4. pack
for a in A B; do
  r="$WORK/runs/$a"
  [ -d "$r" ] || continue
  mkdir -p "$WORK/pack/$a"
  cp "$r"/history.csv "$WORK/pack/$a/" 2>/dev/null
  if [ -d "$r/best" ]; then cp -r "$r/best" "$WORK/pack/$a/best"; else cp -r "$r/last/model" "$WORK/pack/$a/last-model" 2>/dev/null; fi
done
cp "$LOGS/round.log" "$OUT/" 2>/dev/null
tar cf "$WORK/round.tar" -C "$WORK/pack" . && split -b 15000000 -d "$WORK/round.tar" "$OUT/round.tar.part"
say "packed $(du -b "$WORK/round.tar" | cut -f1) bytes: $(ls "$OUT" | tr '\n' ' ')"
