"""The spectrogram warm start of a from-scratch conv front end (activity.frontend, train --frontend-steps)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from activity import train
from activity.constants import CLIP_SAMPLES, HOP, RECEPTIVE_FIELD, SAMPLE_RATE, num_frames
from activity.frontend import MEL_BANDS, fit_frontend, frame_log_mel, mel_filterbank
from activity.model import ActivityModel

TINY = ["--encoder", "tiny", "--gru-hidden", "8", "--gru-layers", "1", "--batch-size", "2", "--num-workers", "0",
        "--quiet"]


def test_mel_filterbank_rows_are_normalised_and_ordered() -> None:
    bank = mel_filterbank().numpy()
    assert bank.shape == (MEL_BANDS, RECEPTIVE_FIELD // 2 + 1)
    np.testing.assert_allclose(bank.sum(axis=1), 1.0, rtol=1e-6)
    centres = (bank * np.arange(bank.shape[1])).sum(axis=1)
    assert np.all(np.diff(centres) >= 0), "bands must rise in frequency"
    assert centres[-1] > 0.8 * bank.shape[1], "the top band reaches near the Nyquist frequency"


def test_frame_log_mel_sees_exactly_the_samples_of_its_frame() -> None:
    audio = torch.zeros(2, CLIP_SAMPLES)
    frame = 10
    t = torch.arange(RECEPTIVE_FIELD) / SAMPLE_RATE
    audio[0, frame * HOP: frame * HOP + RECEPTIVE_FIELD] = torch.sin(2 * torch.pi * 3000.0 * t)
    mel = frame_log_mel(audio)
    assert mel.shape == (2, num_frames(CLIP_SAMPLES), MEL_BANDS)
    energy = mel[0].exp().sum(dim=1)
    assert int(energy.argmax()) == frame
    # Frames that share no sample with the tone stay silent; the second clip is silent throughout.
    silent = [f for f in range(mel.shape[1]) if abs(f - frame) * HOP >= RECEPTIVE_FIELD]
    assert torch.all(energy[silent] < 1e-3)
    assert torch.all(mel[1].exp().sum(dim=1) < 1e-3)
    # The 3 kHz tone lands in the band whose filter peaks nearest 3 kHz.
    bin_3k = round(3000.0 * RECEPTIVE_FIELD / SAMPLE_RATE)
    assert int(mel[0, frame].argmax()) == int(mel_filterbank()[:, bin_3k].argmax())


def test_fit_frontend_lowers_the_error_and_touches_only_the_conv_stack() -> None:
    torch.manual_seed(0)
    model = ActivityModel.from_encoder("tiny", gru_hidden=8, gru_layers=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clips = torch.randn(4, CLIP_SAMPLES) * torch.linspace(0.1, 1.0, 4)[:, None]
    clips[:, ::7] += 0.5  # some spectral shape for the read-out to learn
    rng_before = torch.get_rng_state()
    losses = fit_frontend(model.encoder, [(clip,) for clip in clips], steps=40, batch_size=4, lr=1e-2)
    assert torch.equal(torch.get_rng_state(), rng_before), "the warm start must not draw from the global RNG"
    assert len(losses) == 40 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("encoder.feature_extractor.") for k in changed), changed


def test_train_with_frontend_steps_fits_saves_and_does_not_refit_on_resume(
        synth_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "warm"
    args = ["--data", str(synth_root / "slakh"), "--out", str(out), "--epochs", "1", "--frontend-steps", "5",
            "--stop-after-steps", "1", *TINY]
    assert train.main(args) == 0
    text = capsys.readouterr().out
    assert "front end fitted to the log-mel spectrogram" in text and "of 5 steps" in text
    assert (out / "last" / "model" / "model.safetensors").is_file()
    assert train.main(["--out", str(out), "--resume", "--quiet"]) == 0
    assert "front end fitted" not in capsys.readouterr().out


@pytest.mark.parametrize("extra, words", [
    (["--frontend-steps", "-1"], ["--frontend-steps", "negative"]),
    (["--frontend-steps", "3", "--freeze-feature-extractor"], ["--frontend-steps", "--freeze-feature-extractor"]),
    (["--frontend-steps", "3", "--encoder", "m-a-p/MERT-v1-95M"], ["--frontend-steps", "m-a-p/MERT-v1-95M"]),
    (["--frontend-steps", "3", "--encoder", "mert-v1-95m"], ["--frontend-steps", "mert-v1-95m-random"]),
])
def test_train_refuses_a_frontend_warm_start_that_cannot_apply(
        synth_root: Path, tmp_path: Path, capsys, extra: list[str], words: list[str]) -> None:
    code = train.main(["--data", str(synth_root / "slakh"), "--out", str(tmp_path / "x"), *TINY, *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words) and "Traceback" not in err, err
    assert not (tmp_path / "x").exists()
