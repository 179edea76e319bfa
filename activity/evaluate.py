"""Scores: the course's classification report, F1, mean average precision, threshold tuning.

Inputs are validated first (shapes, 0/1 truth, probabilities in [0, 1]), then scored, and every
function returns named numbers, in the manner of mir_eval.
"""

from __future__ import annotations

import numpy as np

from .constants import CLASSES, NUM_CLASSES, PROB_EPS

DEFAULT_THRESHOLD = 0.5
# Candidate thresholds for tuning: fine enough to matter, coarse enough not to overfit validation.
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)


def _validate(truth: np.ndarray, scores: np.ndarray, what: str = "probabilities") -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(truth)
    scores = np.asarray(scores, dtype=np.float64)
    if truth.shape != scores.shape or truth.ndim != 2 or truth.shape[1] != NUM_CLASSES:
        raise ValueError(f"truth {truth.shape} and {what} {scores.shape} must both be (M, {NUM_CLASSES})")
    if not np.isin(truth, (0, 1)).all():
        raise ValueError("truth must be 0/1")
    return truth.astype(np.uint8), scores


def as_thresholds(thresholds: float | np.ndarray | list[float] | None) -> np.ndarray:
    """A scalar, a per-class list or ``None`` (0.5) as a ``(9,)`` float array."""
    if thresholds is None:
        thresholds = DEFAULT_THRESHOLD
    return np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (NUM_CLASSES,)).copy()


def binarize(probs: np.ndarray, thresholds: float | np.ndarray | None = None) -> np.ndarray:
    """Probabilities ``(..., 9)`` (classes last) -> 0/1 uint8 predictions, ``p >= threshold``."""
    probs = np.asarray(probs)
    if probs.ndim == 0 or probs.shape[-1] != NUM_CLASSES:
        raise ValueError(f"probabilities {probs.shape} must be (..., {NUM_CLASSES}) with classes last")
    return (probs >= as_thresholds(thresholds)).astype(np.uint8)


def f1_scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float | list[float]]:
    """Micro, macro and per-class F1 of 0/1 arrays ``(M, 9)``, as scikit-learn computes them with
    ``zero_division=0`` (a class with neither truth nor prediction scores 0)."""
    truth, pred = _validate(truth, pred, "predictions")
    tp = (truth * pred).sum(0).astype(np.float64)
    fp = ((1 - truth) * pred).sum(0).astype(np.float64)
    fn = (truth * (1 - pred)).sum(0).astype(np.float64)
    denom = 2 * tp + fp + fn
    per_class = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    micro_denom = 2 * tp.sum() + fp.sum() + fn.sum()
    micro = float(2 * tp.sum() / micro_denom) if micro_denom > 0 else 0.0
    return {"micro_f1": micro, "macro_f1": float(per_class.mean()), "per_class_f1": per_class.tolist()}


def average_precisions(truth: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Average precision of each class ``(9,)`` from clip probabilities ``(M, 9)``; NaN for a class without positives."""
    from sklearn.metrics import average_precision_score

    truth, probs = _validate(truth, probs)
    return np.array([average_precision_score(truth[:, c], probs[:, c]) if truth[:, c].any() else np.nan
                     for c in range(NUM_CLASSES)])


def mean_average_precision(truth: np.ndarray, probs: np.ndarray) -> float:
    """Macro average precision over the classes that have at least one positive (NaN if none)."""
    scores = average_precisions(truth, probs)
    scores = scores[~np.isnan(scores)]
    return float(np.mean(scores)) if scores.size else float("nan")


def clip_loss(truth: np.ndarray, probs: np.ndarray) -> float:
    """Binary cross-entropy of clip probabilities ``(M, 9)`` against 0/1 truth, mean over clips and
    classes, probabilities clamped to ``[PROB_EPS, 1 - PROB_EPS]`` (the validation loss training reports)."""
    truth, probs = _validate(truth, probs)
    probs = np.clip(probs, PROB_EPS, 1.0 - PROB_EPS)
    return float(-(truth * np.log(probs) + (1 - truth) * np.log(1.0 - probs)).mean())


def clip_scores(truth: np.ndarray, probs: np.ndarray, thresholds: float | np.ndarray | None = None) -> dict:
    """F1 (micro, macro, per class) at ``thresholds`` and mAP of clip probabilities ``(M, 9)``."""
    scores = f1_scores(truth, binarize(probs, thresholds))
    scores["mAP"] = mean_average_precision(truth, probs)
    return scores


def tune_thresholds(truth: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-class threshold from ``THRESHOLD_GRID`` that maximises that class's F1 on (validation) data.

    Ties go to the threshold closest to 0.5; a class without positives keeps 0.5.
    """
    truth, probs = _validate(truth, probs)
    out = np.full(NUM_CLASSES, DEFAULT_THRESHOLD)
    grid = THRESHOLD_GRID
    order = np.argsort(np.abs(grid - DEFAULT_THRESHOLD), kind="stable")
    for c in range(NUM_CLASSES):
        if not truth[:, c].any():
            continue
        pred = probs[:, c][None, :] >= grid[:, None]  # (G, M)
        tp = (pred & (truth[:, c] == 1)).sum(1)
        fp = (pred & (truth[:, c] == 0)).sum(1)
        fn = truth[:, c].sum() - tp
        f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
        best = order[np.argmax(f1[order])]
        out[c] = grid[best]
    return out


def classification_report(truth: np.ndarray, pred: np.ndarray, as_dict: bool = False, digits: int = 4):
    """scikit-learn's ``classification_report`` over the nine classes: per class, micro, macro,
    weighted and samples averages (the course's table)."""
    from sklearn.metrics import classification_report as sk_report

    truth, pred = _validate(truth, pred, "predictions")
    return sk_report(
        truth, pred, target_names=list(CLASSES), labels=list(range(NUM_CLASSES)),
        zero_division=0, output_dict=as_dict, digits=digits,
    )


def frame_scores(truth_roll: np.ndarray, prob_roll: np.ndarray, thresholds: float | np.ndarray | None = None) -> dict:
    """Frame-level micro/macro F1 of a ``(T, 9)`` truth roll against a ``(T, 9)`` probability roll."""
    truth_roll = np.asarray(truth_roll)
    prob_roll = np.asarray(prob_roll)
    if truth_roll.shape != prob_roll.shape:
        raise ValueError(f"truth roll {truth_roll.shape} and prediction roll {prob_roll.shape} differ")
    return f1_scores(truth_roll, binarize(prob_roll, thresholds))
