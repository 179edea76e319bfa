"""Golden outputs of the shipped checkpoint, and bf16 against float32 under every oneDNN ISA this CPU offers.

tests/golden holds four fixed clips and the checkpoint's float32 outputs for them
(tests/golden/make_golden.py wrote them). Every machine must reproduce them: float32 to 1e-4, and
``--dtype auto`` (bf16 where this CPU is fast at it, after the guard) to ``BF16_TOLERANCE``, the bound
the guard itself enforces; correct bf16 kernels stay within 0.023 of float32 here on all four ISAs of an
AMX Xeon, the broken AMX positional convolution moved probabilities by 0.08 to 0.3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from activity.model import ActivityModel
from activity.numerics import ISA_FLAGS, available_isas, cpu_flags, report_under_isa
from activity.precision import BF16_TOLERANCE, FAST_COPY_TOLERANCE
from activity.predict import predict_clips

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
CHECKPOINT = ROOT / "checkpoints" / "demo"

# What oneDNN's own ISA line says under each cap: proof that the cap took effect in the child process.
ISA_WORDS = {"AVX2": "AVX2", "AVX512_CORE": "AVX-512", "AVX512_CORE_BF16": "bfloat16", "AVX512_CORE_AMX": "AMX"}
PRESET_BOUND = 0.05
"""Worst relative error of a hidden state in bf16 (measured 0.014 to 0.016 for tiny, compact and MERT-95M on
every ISA here; the broken AMX convolution gave 0.33)."""


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    clips = np.load(GOLDEN / "demo_clips.npz")["clips"].astype(np.float32) / 32768
    outputs = dict(np.load(GOLDEN / "demo_outputs.npz"))
    return {"clips": clips, **outputs}


@pytest.fixture(scope="module")
def demo_model() -> ActivityModel:
    return ActivityModel.from_pretrained(CHECKPOINT).eval()


def test_golden_files_belong_to_the_shipped_checkpoint(golden: dict[str, np.ndarray]) -> None:
    import hashlib

    sha = hashlib.sha256((CHECKPOINT / "model.safetensors").read_bytes()).hexdigest()
    assert str(golden["checkpoint_sha256"]) == sha, "checkpoints/demo changed: run tests/golden/make_golden.py"
    assert golden["clips"].shape == (4, 120000) and golden["frame_probs"].shape == (4, 374, 9)
    # Fixed clips with something to say: several classes clearly on and clearly off.
    assert (golden["clip_probs"] > 0.9).sum() >= 8 and (golden["clip_probs"] < 0.15).sum() >= 4


def test_float32_reproduces_the_golden_outputs(golden: dict[str, np.ndarray], demo_model: ActivityModel) -> None:
    with torch.inference_mode():
        own = demo_model(torch.from_numpy(golden["clips"]))
    fast = predict_clips(demo_model, golden["clips"], dtype="fp32")
    for result in (own, fast):
        np.testing.assert_allclose(np.asarray(result.clip_probs), golden["clip_probs"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(np.asarray(result.frame_probs), golden["frame_probs"], atol=1e-4, rtol=0)


def test_auto_reproduces_the_golden_outputs(golden: dict[str, np.ndarray], demo_model: ActivityModel) -> None:
    auto = predict_clips(demo_model, golden["clips"], dtype="auto")
    assert np.abs(auto.clip_probs - golden["clip_probs"]).max() <= BF16_TOLERANCE
    assert np.abs(auto.frame_probs - golden["frame_probs"]).max() <= BF16_TOLERANCE


def test_isa_list_follows_the_cpu_flags() -> None:
    assert available_isas(set()) == []
    assert available_isas({"avx2", "fma"}) == ["AVX2"]
    sapphire = {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16", "amx_bf16", "amx_tile"}
    assert available_isas(sapphire) == list(ISA_FLAGS)
    assert available_isas(sapphire - {"amx_tile"}) == ["AVX2", "AVX512_CORE", "AVX512_CORE_BF16"]


@pytest.mark.slow
@pytest.mark.parametrize("isa", list(ISA_FLAGS))
def test_bf16_agrees_with_float32_under_each_onednn_isa(isa: str) -> None:
    missing = [flag for flag in ISA_FLAGS[isa] if flag not in cpu_flags()]
    if missing:
        pytest.skip(f"this CPU lacks {', '.join(missing)}, so it cannot run oneDNN's {isa} kernels")
    row = report_under_isa(isa, CHECKPOINT, GOLDEN, presets=("tiny", "compact"))
    assert ISA_WORDS[isa] in row["onednn_isa"], row["onednn_isa"]
    checkpoint = row["checkpoint"]
    assert checkpoint["fast_fp32"] <= FAST_COPY_TOLERANCE
    # The unguarded bf16 paths themselves, not only what the guard lets through, must be right.
    assert checkpoint["fast_bf16"] <= BF16_TOLERANCE, checkpoint
    assert checkpoint["autocast_bf16"] <= BF16_TOLERANCE, checkpoint
    assert checkpoint["auto"] <= BF16_TOLERANCE, checkpoint
    for preset, errors in row["presets"].items():
        assert errors["fast_bf16"] <= PRESET_BOUND and errors["autocast_bf16"] <= PRESET_BOUND, (preset, errors)
