# Two commands set everything up on a fresh machine with Python 3.10+: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# tinysoundfont's only dependency, pyaudio, serves live playback and does not build here.
NODEPS := tinysoundfont==0.3.7
# pip's byte-compiling of every installed module (torch's thousands) took 51 of the install's 93 s on 2 cores
# (experiments/RESULTS.md, "make demo's time"), so pip skips it and one import of what the entry points and
# synth workers load writes the bytecode of those modules only. It writes it even where PYTHONDONTWRITEBYTECODE
# is set (as on some CI machines): without it every process would compile them again, 9 s each.
PIP := $(PY) -m pip install --quiet --disable-pip-version-check --no-compile
WARM_IMPORTS := import sys; sys.dont_write_bytecode = False; import torch, transformers, numpy, sklearn.metrics, \
	pretty_midi, matplotlib.pyplot, soundfile, soxr, safetensors.torch, pedalboard, tinysoundfont, tqdm; \
	from transformers import HubertConfig, HubertModel
DATA := data/synth-slakh
# The demo's measure: the 225 test songs of a full-size build (seed 0, TimGM6mb), nothing else.
DEMO_DATA := data/synth-full-test
CKPT := checkpoints/demo

.PHONY: setup test demo data clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt Makefile pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10+ is needed, found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	$(PIP) --no-deps $(NODEPS)
	$(PIP) --no-deps -e .
	$(PY) -c '$(WARM_IMPORTS)'
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

data: $(STAMP)
	$(PY) -m activity.synth --out $(DATA) --resume

# The shipped checkpoint on a course-sized synthetic test split (the course's report), then one
# song's piano roll. Only the split it scores is built: 225 songs, no training or validation songs.
demo: $(STAMP)
	$(PY) -m activity.synth --size full --splits test --out $(DEMO_DATA) --resume
	$(PY) -m activity.infer --ckpt $(CKPT) --data $(DEMO_DATA)/slakh --out reports/demo
	$(PY) plot_pianoroll.py --track Track01950 --ckpt $(CKPT) --test-track-dir $(DEMO_DATA)/test_track --save-dir plots

clean-venv:
	rm -rf $(VENV)
