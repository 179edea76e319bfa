"""Scores agree with scikit-learn; thresholds are tuned per class."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from activity.constants import CLASSES, NUM_CLASSES
from activity.evaluate import (
    average_precisions,
    binarize,
    classification_report,
    clip_loss,
    clip_scores,
    frame_scores,
    tune_thresholds,
)


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    truth = (rng.random((200, NUM_CLASSES)) < 0.4).astype(np.uint8)
    probs = np.clip(truth * 0.5 + rng.random(truth.shape) * 0.6, 0, 1)
    return truth, probs


def test_f1_matches_sklearn(data) -> None:
    truth, probs = data
    pred = binarize(probs, 0.5)
    scores = clip_scores(truth, probs, 0.5)
    assert scores["micro_f1"] == pytest.approx(f1_score(truth, pred, average="micro"))
    assert scores["macro_f1"] == pytest.approx(f1_score(truth, pred, average="macro", zero_division=0))
    np.testing.assert_allclose(scores["per_class_f1"], f1_score(truth, pred, average=None, zero_division=0))
    assert 0 < scores["mAP"] <= 1


def test_tuned_thresholds_never_worse_than_half(data) -> None:
    truth, probs = data
    th = tune_thresholds(truth, probs)
    assert th.shape == (NUM_CLASSES,) and ((th > 0) & (th < 1)).all()
    assert clip_scores(truth, probs, th)["macro_f1"] >= clip_scores(truth, probs, 0.5)["macro_f1"]
    # Separable class: the tuned threshold splits it perfectly.
    truth2 = np.zeros((10, NUM_CLASSES), np.uint8)
    truth2[:5, 0] = 1
    probs2 = np.full((10, NUM_CLASSES), 0.1)
    probs2[:5, 0] = 0.3
    assert 0.1 < tune_thresholds(truth2, probs2)[0] <= 0.3
    assert tune_thresholds(truth2, probs2)[1] == 0.5  # no positives: default kept


def test_report_has_the_course_rows(data) -> None:
    truth, probs = data
    text = classification_report(truth, binarize(probs))
    for row in (*CLASSES, "micro avg", "macro avg", "weighted avg", "samples avg"):
        assert row in text
    as_dict = classification_report(truth, binarize(probs), as_dict=True)
    assert as_dict["macro avg"]["f1-score"] == pytest.approx(clip_scores(truth, probs)["macro_f1"])


def test_frame_scores_on_rolls() -> None:
    truth = np.zeros((100, NUM_CLASSES), np.uint8)  # (T, 9): time first
    truth[:50, 0] = 1
    probs = truth.astype(float) * 0.9
    assert frame_scores(truth, probs)["micro_f1"] == 1.0
    probs[:50, 1] = 0.9  # a false alarm on class 1 only
    assert frame_scores(truth, probs)["per_class_f1"][1] == 0.0 and frame_scores(truth, probs)["per_class_f1"][0] == 1.0
    with pytest.raises(ValueError, match="differ"):
        frame_scores(truth, probs[:90])


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"must (both )?be"):
        clip_scores(np.zeros((4, 8)), np.zeros((4, 8)))


def test_average_precision_per_class_and_its_mean() -> None:
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(1)
    truth = (rng.random((50, NUM_CLASSES)) < 0.4).astype(np.uint8)
    truth[:, 2] = 0  # a class nobody plays: no AP, left out of the mean
    probs = rng.random((50, NUM_CLASSES))
    per_class = average_precisions(truth, probs)
    assert per_class.shape == (NUM_CLASSES,) and np.isnan(per_class[2])
    assert per_class[0] == pytest.approx(average_precision_score(truth[:, 0], probs[:, 0]))
    assert clip_scores(truth, probs)["mAP"] == pytest.approx(np.nanmean(per_class))


def test_clip_loss_is_the_mean_binary_cross_entropy() -> None:
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(3)
    truth = (rng.random((6, NUM_CLASSES)) < 0.4).astype(np.uint8)
    probs = rng.random((6, NUM_CLASSES))
    probs[0, 0], probs[1, 1] = 0.0, 1.0  # clamped, so the loss stays finite
    expected = F.binary_cross_entropy(torch.tensor(probs).clamp(1e-6, 1 - 1e-6), torch.tensor(truth, dtype=torch.float64))
    assert clip_loss(truth, probs) == pytest.approx(float(expected))
    assert clip_loss(truth, truth.astype(float)) == pytest.approx(1e-6, rel=0.01)
    with pytest.raises(ValueError):
        clip_loss(truth[:, :8], probs[:, :8])
