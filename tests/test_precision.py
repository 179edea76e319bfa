"""The one precision rule (activity.precision.resolve_dtype) and the flags that use it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from activity import precision
from activity.errors import ActivityError
from activity.precision import BF16_MIN_SPEEDUP, INT8, auto_dtype, describe_dtype, resolve_dtype

CPU = torch.device("cpu")


def never_called() -> float:
    raise AssertionError("the speed of bf16 was measured where it cannot matter")


def test_auto_rule_on_cuda_follows_bf16_support() -> None:
    assert auto_dtype("cuda", cuda_bf16=True, cpu_speedup=never_called) == torch.bfloat16
    assert auto_dtype("cuda", cuda_bf16=False, cpu_speedup=never_called) == torch.float32


@pytest.mark.parametrize("native, speedup, expected", [
    (False, None, torch.float32),  # plain AVX2 laptop: no bf16 instructions, not even timed
    (True, 0.6, torch.float32),  # AVX512-BF16 without AMX: bf16 products slower than float32
    (True, 1.2, torch.float32),  # faster, but within the noise margin
    (True, BF16_MIN_SPEEDUP, torch.bfloat16),
    (True, 5.0, torch.bfloat16),  # AMX
])
def test_auto_rule_on_the_cpu_needs_native_bf16_and_measured_speed(native: bool, speedup: float | None,
                                                                   expected: torch.dtype) -> None:
    measure = never_called if speedup is None else (lambda: speedup)
    assert auto_dtype("cpu", cpu_native_bf16=native, cpu_speedup=measure) == expected


def test_resolve_dtype_auto_uses_this_machines_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert resolve_dtype("auto", CPU) == torch.float32
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "bf16_speedup", lambda: 0.7)
    assert resolve_dtype("auto", CPU) == torch.float32
    assert resolve_dtype(None, CPU) == torch.float32
    monkeypatch.setattr(precision, "bf16_speedup", lambda: 4.0)
    assert resolve_dtype("auto", CPU) == torch.bfloat16
    # Explicit choices are never second-guessed by the speed rule (the guard still checks bf16).
    assert resolve_dtype("fp32", CPU) == torch.float32 and resolve_dtype("float32", CPU) == torch.float32
    monkeypatch.setattr(precision, "bf16_speedup", lambda: 0.1)
    assert resolve_dtype("bf16", CPU) == torch.bfloat16 and resolve_dtype("BFloat16", CPU) == torch.bfloat16
    assert resolve_dtype(torch.bfloat16, CPU) == torch.bfloat16


def test_bad_dtypes_are_named() -> None:
    with pytest.raises(ActivityError, match="dtype 'fp16': expected auto, bf16, fp32 or int8"):
        resolve_dtype("fp16", CPU)
    with pytest.raises(ActivityError, match="expected float32, bfloat16 or qint8"):
        resolve_dtype(torch.float16, CPU)


def test_int8_is_asked_for_never_picked_and_cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_dtype("int8", CPU) == INT8 == resolve_dtype("INT8", CPU) == resolve_dtype(torch.qint8, CPU)
    assert describe_dtype(INT8, CPU) == "dtype int8 on cpu"
    with pytest.raises(ActivityError, match="--dtype int8 runs on the CPU only"):
        resolve_dtype("int8", torch.device("cuda"))
    # auto is bf16 or float32 whatever the machine: int8 changes reports (experiments/RESULTS.md, "int8").
    for native in (False, True):
        for speedup in (0.5, 100.0):
            monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
            monkeypatch.setattr(precision, "bf16_speedup", lambda: speedup)
            assert resolve_dtype("auto", CPU) in (torch.float32, torch.bfloat16)
    # int8 exists only in the CPU fast copy: autocast paths (training, validation) run it as float32.
    assert precision.checked_autocast_dtype(torch.nn.Linear(2, 2), CPU, INT8) == torch.float32


def test_inference_flags_take_int8_and_training_does_not() -> None:
    from activity import infer, pianoroll, train

    assert infer.build_parser().parse_args(["--dtype", "int8"]).dtype == "int8"
    assert pianoroll.build_parser().parse_args(["--dtype", "int8"]).dtype == "int8"
    with pytest.raises(SystemExit):
        train.build_parser().parse_args(["--precision", "int8"])


def test_bf16_speedup_is_measured_once_per_process() -> None:
    first = precision.bf16_speedup()
    assert first > 0 and precision.bf16_speedup() == first


@pytest.mark.parametrize("module", ["activity.infer", "plot_pianoroll"])
def test_dtype_flag_on_the_inference_commands(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    parser = importlib.import_module(module).build_parser()
    assert parser.parse_args([]).dtype == "auto"
    assert parser.parse_args(["--dtype", "fp32"]).dtype == "fp32"
    help_text = parser.format_help()
    assert "--dtype {auto,bf16,fp32,int8}" in help_text and "checked against float32" in " ".join(help_text.split())
    assert "never picked by auto" in " ".join(help_text.split())
    with pytest.raises(SystemExit):
        parser.parse_args(["--dtype", "fp16"])
    assert "invalid choice: 'fp16'" in capsys.readouterr().err


def test_train_precision_flag_shares_the_rule() -> None:
    from activity.train import build_parser

    parser = build_parser()
    assert parser.parse_args([]).precision == "auto"
    assert "measurably faster than float32" in " ".join(parser.format_help().split())


def test_near_threshold_marks_rows_with_any_class_inside_the_margin() -> None:
    from activity.precision import near_threshold

    thresholds = np.full(9, 0.5, np.float32)
    thresholds[3] = 0.2
    probs = np.full((4, 9), 0.9, np.float32)
    probs[1, 0] = 0.52  # inside 0.03 of 0.5
    probs[2, 3] = 0.25  # 0.05 from its own threshold 0.2: outside
    probs[3, 3] = 0.19  # inside 0.03 of 0.2, on the other side
    assert near_threshold(probs, thresholds, 0.03).tolist() == [False, True, False, True]
    assert near_threshold(probs, thresholds, 0.06).tolist() == [False, True, True, True]


def test_split_report_in_bf16_is_float32s_after_the_recheck(synth_root, ckpt, monkeypatch: pytest.MonkeyPatch) -> None:
    """The clips near a threshold are float32's rows exactly; the others keep bf16's; decisions are float32's."""
    from activity.api import Detector
    from activity.datasets import read_split

    index = read_split(synth_root / "slakh", "test")
    reference = Detector(ckpt, device="cpu", dtype="fp32", threshold=0.5).score_index(index)
    raw = Detector(ckpt, device="cpu", dtype="bf16", threshold=0.5, recheck=False).score_index(index)
    assert raw.rechecked == 0 and np.abs(raw.probs - reference.probs).max() > 0  # bf16 did round
    # The tiny random model's probabilities sit near 0.5; a margin that splits the clips makes both kinds of row.
    distance = np.abs(raw.probs - 0.5).min(axis=1)
    margin = float(np.median(distance))
    monkeypatch.setattr(precision, "RECHECK_MARGIN", margin)
    checked = Detector(ckpt, device="cpu", dtype="bf16", threshold=0.5).score_index(index)
    near = distance <= margin
    assert 0 < checked.rechecked == near.sum() < len(index)
    np.testing.assert_allclose(checked.probs[near], reference.probs[near], atol=1e-5)
    np.testing.assert_array_equal(checked.probs[~near], raw.probs[~near])
    flips_left = (checked.predictions != reference.predictions).any(axis=1)
    assert not flips_left[np.abs(raw.probs - reference.probs).max(axis=1) < margin].any()
