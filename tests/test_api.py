"""The public API: the package's names, and activity.api.Detector holding a model and its options once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import activity
from activity.api import Detector
from activity.errors import ActivityError
from activity.model import ActivityModel
from activity.predict import predict_clips

REPO = Path(__file__).resolve().parents[1]


def test_every_public_name_resolves_and_unknown_names_fail() -> None:
    import activity.api
    import activity.constants

    assert activity.Detector is activity.api.Detector and activity.CLASSES is activity.constants.CLASSES
    for name in activity.__all__:
        assert getattr(activity, name) is not None
    assert set(activity.__all__) <= set(dir(activity))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        activity.Nope  # noqa: B018


def test_command_line_parsers_do_not_import_torch() -> None:
    code = ("import sys, activity; from activity import infer, train, grow, numerics; "
            "from activity.synth import __main__ as synth; import plot_pianoroll; "
            "[m.build_parser() for m in (infer, train, grow, numerics, synth, plot_pianoroll)]; activity.CLASSES; "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.fixture(scope="module")
def tiny() -> ActivityModel:
    torch.manual_seed(0)
    model = ActivityModel.from_encoder("tiny", gru_hidden=8, gru_layers=1).eval()
    model.thresholds = [0.3] * 9
    return model


def test_detector_holds_the_options_once(tiny: ActivityModel) -> None:
    clips = np.random.default_rng(0).standard_normal((3, 8000)).astype(np.float32) * 0.1
    detector = Detector(tiny, device="cpu", dtype="fp32", batch_size=2)
    assert detector.dtype == torch.float32 and detector.device == torch.device("cpu")
    np.testing.assert_array_equal(detector.thresholds, np.full(9, 0.3))
    assert detector.threshold_source == "saved"
    got = detector.predict_clips(clips)
    expected = predict_clips(tiny, clips, batch_size=2, dtype="fp32")
    np.testing.assert_array_equal(got.clip_probs, expected.clip_probs)
    overridden = Detector(tiny, threshold=0.6)
    assert overridden.threshold_source == "--threshold 0.6" and np.all(overridden.thresholds == 0.6)
    assert "in memory" in detector.describe() and "float32 on cpu" in detector.describe()


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "--batch-size must be at least 1, got 0"),
    ({"threshold": 1.5}, "--threshold must be between 0 and 1, got 1.5"),
    ({"dtype": "half"}, "dtype 'half': expected auto, bf16, fp32 or int8"),
    ({"device": "tpu"}, "--device tpu"),
])
def test_detector_names_a_bad_option(tiny: ActivityModel, kwargs: dict, message: str) -> None:
    with pytest.raises(ActivityError, match=message):
        Detector(tiny, **kwargs)


def test_detector_from_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ActivityError, match="does not exist"):
        Detector(tmp_path / "nothing")


def test_score_split_is_the_report_of_its_probabilities(synth_root: Path, tiny: ActivityModel) -> None:
    from activity.datasets import read_split
    from activity.evaluate import binarize, classification_report, clip_scores

    detector = Detector(tiny, dtype="fp32", batch_size=4)
    scores = detector.score_split(synth_root / "slakh", "test")
    index = read_split(synth_root / "slakh", "test")
    assert scores.probs.shape == (len(index), 9) and scores.index.files == index.files
    np.testing.assert_array_equal(scores.predictions, binarize(scores.probs, 0.3))
    assert scores.report == classification_report(index.labels, scores.predictions)
    assert scores.scores == clip_scores(index.labels, scores.probs, detector.thresholds)
    assert scores.report_dict["macro avg"]["f1-score"] == pytest.approx(scores.scores["macro_f1"])
    with pytest.raises(ActivityError, match="does not exist"):
        detector.score_split(synth_root / "slakh", "nosuchsplit")


def test_predict_and_save_owns_the_output_files(synth_root: Path, tiny: ActivityModel, tmp_path: Path) -> None:
    import json

    detector = Detector(tiny, dtype="fp32")
    song = synth_root / "test_track" / "Track01950.flac"
    result = detector.predict_and_save(song, tmp_path / "out", formats=("npz", "json", "audacity"),
                                       midi=song.with_suffix(".mid"))
    assert set(result.written) == {"npz", "json", "audacity"}
    assert all(p.parent == tmp_path / "out" and p.name.startswith("Track01950") for p in result.written.values())
    # The same numbers as predicting the file: the library and the command line write one thing.
    expected = detector.predict_file(song)
    with np.load(result.written["npz"]) as npz:
        np.testing.assert_array_equal(npz["probs"], expected.frame_probs)
    saved = json.loads(result.written["json"].read_text())
    assert saved["scores"]["frame"]["macro_f1"] == pytest.approx(result.scores["frame"]["macro_f1"])
    assert result.truth is not None and result.truth.frame_truth.shape == expected.frame_probs.shape
    with pytest.raises(ActivityError, match="format"):
        detector.predict_and_save(song, tmp_path / "o2", formats=("mp3",))
