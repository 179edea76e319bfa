"""``train --distill-from``: soft targets from a saved model keep a continuation near what it knew."""

from pathlib import Path

import numpy as np
import pytest
import torch

from activity import train

TINY_TRAIN = ["--encoder", "tiny", "--gru-hidden", "8", "--gru-layers", "1", "--batch-size", "2",
              "--num-workers", "0", "--quiet", "--frame-loss-weight", "0.5"]


@pytest.fixture(scope="module")
def teacher(synth_root: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "run"
    assert train.main(["--data", str(synth_root / "slakh"), "--out", str(out), "--epochs", "1", *TINY_TRAIN]) == 0
    return out / "best"


def test_distillation_loss_is_smallest_at_the_teachers_outputs() -> None:
    from types import SimpleNamespace

    from activity.model import autopool

    torch.manual_seed(0)
    alpha = torch.ones(9)

    def output(logits: torch.Tensor) -> SimpleNamespace:  # the fields of ActivityOutput the loss reads
        probs = torch.sigmoid(logits)
        return SimpleNamespace(frame_logits=logits, frame_probs=probs, clip_probs=autopool(probs, alpha))

    teacher_logits = torch.randn(2, 374, 9)
    student_logits = torch.cat([teacher_logits, torch.randn(1, 374, 9)]).requires_grad_(True)  # one item more
    loss = train.distillation_loss(output(student_logits), output(teacher_logits[:2]), frame_loss_weight=1.0)
    loss.backward()
    # The first two items sit at the soft targets: no gradient; the third is not distilled at all.
    assert student_logits.grad.abs().max() < 1e-6
    shifted = train.distillation_loss(output(teacher_logits + 0.5), output(teacher_logits), 1.0)
    assert shifted > loss + 1e-3


def _clip_probs(ckpt: Path, synth_root: Path) -> np.ndarray:
    from activity import Detector
    from activity.datasets import read_split

    return Detector(ckpt, device="cpu", dtype="fp32").split_probs(read_split(synth_root / "slakh", "validation"))


def test_distillation_keeps_a_continuation_near_its_teacher(teacher: Path, synth_root: Path, tmp_path: Path,
                                                             capsys) -> None:
    common = ["--data", str(synth_root / "slakh"), "--init-from", str(teacher), "--epochs", "2", "--lr-head", "3e-2",
              "--lr-encoder", "3e-3", *TINY_TRAIN]
    assert train.main([*common, "--out", str(tmp_path / "plain")]) == 0
    assert train.main([*common, "--out", str(tmp_path / "distilled"), "--distill-from", str(teacher),
                       "--distill-weight", "20", "--distill-share", "1"]) == 0
    assert f"distilling from {teacher}: soft targets on 100% of each batch, weight 20" in capsys.readouterr().out
    before = _clip_probs(teacher, synth_root)
    drift_plain = np.abs(_clip_probs(tmp_path / "plain" / "last" / "model", synth_root) - before).mean()
    drift_distilled = np.abs(_clip_probs(tmp_path / "distilled" / "last" / "model", synth_root) - before).mean()
    assert drift_distilled < 0.5 * drift_plain, (drift_distilled, drift_plain)


def test_a_distilled_run_resumes_to_the_same_weights(teacher: Path, synth_root: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    common = ["--data", str(synth_root / "slakh"), "--epochs", "1", "--distill-from", str(teacher), *TINY_TRAIN]
    assert train.main([*common, "--out", str(tmp_path / "whole")]) == 0
    assert train.main([*common, "--out", str(tmp_path / "cut"), "--stop-after-steps", "2"]) == 0
    assert train.main(["--out", str(tmp_path / "cut"), "--resume", "--quiet"]) == 0
    whole = load_file(tmp_path / "whole" / "last" / "model" / "model.safetensors")
    cut = load_file(tmp_path / "cut" / "last" / "model" / "model.safetensors")
    for key in whole:
        np.testing.assert_array_equal(whole[key], cut[key], err_msg=key)


@pytest.mark.parametrize("flags, message", [
    (["--distill-from", "/nonexistent/ckpt"], "error: --distill-from: checkpoint folder /nonexistent/ckpt does not exist"),
    (["--distill-share", "1.5"], "error: --distill-share must be in [0, 1], got 1.5"),
    (["--distill-weight", "-1"], "error: --distill-weight must not be negative, got -1.0"),
])
def test_bad_distillation_flags_name_the_flag(flags: list[str], message: str, synth_root: Path, tmp_path: Path,
                                              capsys) -> None:
    code = train.main(["--data", str(synth_root / "slakh"), "--out", str(tmp_path / "x"), *TINY_TRAIN, *flags])
    assert code == 2
    assert message in capsys.readouterr().err
