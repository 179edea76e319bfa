#!/usr/bin/env bash
# The recipe of the next checkpoints/demo (issue 19): training data in several SoundFonts with the effects
# chain and more songs without bass/piano/guitar, training from today's checkpoint with a share of the
# clips remixed from their own stems, and the cross-font measure. One script, the same on a CPU and a GPU; nothing here needs the network.
#
#   SIZE=tiny STEPS=4 BATCH=2 bash experiments/recipe_next_demo.sh     # a smoke run on the CPU, minutes
#   SIZE=full STEPS=6000 BATCH=32 WORKERS=15 bash experiments/recipe_next_demo.sh   # on a GPU machine
#
# Variables (defaults in brackets):
#   PY [.venv/bin/python]  SIZE [full]  SEEDS ["20 21"]: one build per seed; the first's validation split
#   picks the best model, every build's training split trains it.  FONTS [the four training fonts of
#   activity.synth.fonts.TRAINING_FONTS; names or .sf2/.sf3 paths: on a machine without apt, copy
#   /usr/share/sounds/sf2/{sf_GMbank,FluidR3_GM}.sf2 and sf3/FluidR3Mono_GM.sf3 along and name the paths]
#   FONT_PER [stem]  EXTRA_SYNTH ["--effects --absence"]  STEM_BUILDS [1]: how many builds (the first ones)
#   keep their training clips' stems (--stems: about 17 GB more per full-size build, so a 64 GB disk holds one such build beside the others)
#   REMIX [0.5]: --remix-prob of training (0 = no remixing)  STEPS [6000]  BATCH [32]  WORKERS [CPU count]
#   INIT [checkpoints/demo]  OUT [runs/next-demo]  DATA [data]
# The held-out font (OPL3_FM) is refused in FONTS: the cross-font score would no longer be held out.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SIZE=${SIZE:-full}
SEEDS=${SEEDS:-"20 21"}
FONTS=${FONTS:-"TimGM6mb sf_GMbank FluidR3_GM FluidR3Mono_GM"}
FONT_PER=${FONT_PER:-stem}
EXTRA_SYNTH=${EXTRA_SYNTH:-"--effects --absence"}
STEM_BUILDS=${STEM_BUILDS:-1}
REMIX=${REMIX:-0.5}
STEPS=${STEPS:-6000}
BATCH=${BATCH:-32}
WORKERS=${WORKERS:-$(nproc)}
INIT=${INIT:-checkpoints/demo}
OUT=${OUT:-runs/next-demo}
DATA=${DATA:-data}
case " $FONTS " in *OPL3*) echo "error: FONTS names the held-out font OPL3_FM" >&2; exit 2 ;; esac

builds=()
for seed in $SEEDS; do
  stems=()
  [ "${#builds[@]}" -lt "$STEM_BUILDS" ] && stems=(--stems)
  folder="$DATA/next-$SIZE-s$seed${stems:+-stems}"
  echo "== build $folder ($(date -u +%H:%M:%S))"
  # shellcheck disable=SC2086
  $PY -m activity.synth --size "$SIZE" --seed "$seed" --soundfonts $FONTS --font-per "$FONT_PER" $EXTRA_SYNTH \
    "${stems[@]}" --workers "$WORKERS" --out "$folder" --resume --quiet
  builds+=("$folder/slakh")
done

echo "== train $OUT from $INIT ($(date -u +%H:%M:%S))"
extra=()
[ "${#builds[@]}" -gt 1 ] && extra=(--extra-train "${builds[@]:1}")
$PY -m activity.train --data "${builds[0]}" "${extra[@]}" --out "$OUT" --init-from "$INIT" \
  --freeze-feature-extractor --encoder-dropout 0 --batch-size "$BATCH" --epochs 100 --max-steps "$STEPS" \
  --lr-head 1.5e-3 --lr-encoder 4e-4 --warmup 0.05 --frame-loss-weight 1.0 --mix-prob 0.0 --remix-prob "$REMIX" --precision auto \
  --num-workers "$(( WORKERS > 8 ? 8 : WORKERS ))" --save-every 500 --seed 20 --quiet

echo "== cross-font measure of $OUT/best ($(date -u +%H:%M:%S))"
$PY experiments/cross_font.py --ckpt "$OUT/best" --size "$SIZE" --data "$DATA" --workers "$WORKERS" \
  --json "$OUT/cross_font.json"
echo "== done ($(date -u +%H:%M:%S)); compare with checkpoints/demo's figures in experiments/RESULTS.md"
