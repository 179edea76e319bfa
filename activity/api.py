"""The library's one entry point: a :class:`Detector` holds a trained model and how to run it, once.

    from activity import Detector

    detector = Detector("checkpoints/demo")              # device: CUDA if any, dtype="auto", batch_size=8
    song = detector.predict_file("song.flac")            # any length, rate and channel count
    song.frame_probs                                     # (T, 9) at 75 Hz, song.frame_times (T,) s
    song.segment_probs                                   # (S, 9) per 5 s segment
    scores = detector.score_split("data/synth-slakh/slakh", "test")
    print(scores.report)                                 # the course's classification report

The command lines (``activity.infer``, ``plot_pianoroll.py``), training's validation and the experiment
scripts all go through it, so a library user gets exactly what they get. Arrays are numpy, float32,
time before classes (see :mod:`activity.predict` for the song layout).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from tqdm import tqdm

from .audio import load_clip
from .constants import DEMO_CHECKPOINT, NUM_CLASSES
from .datasets import read_split, warn_length_fixed
from .errors import ActivityError
from .evaluate import as_thresholds, binarize, classification_report, clip_scores, frame_scores
from .events import DEFAULT_MIN_DURATION, DEFAULT_MIN_GAP, check_rule
from .html_view import OggEncoder
from .midi import frame_roll, segment_roll
from .model import ActivityModel
from .outputs import SongOutputs, parse_formats, write_outputs
from .plotting import available_tracks, find_track
from .precision import describe_dtype, dtype_name, near_threshold, resolve_dtype
from .predict import predict_clips, resolve_device
from .sed_metrics import SongTruth, sed_scores
from .windows import predict_file, predict_song

__all__ = ["DEMO_CHECKPOINT", "DEMO_TRAINING", "Detector", "SongScores", "SplitScores", "check_options", "training_data"]


DEMO_TRAINING = ("trained on synthetic Slakh played by one SoundFont (TimGM6mb), no effects: "
                 "see docs/checkpoint-history.md for what to trust")
"""What the shipped checkpoint was trained on (its folder holds only the model; the history is in docs/)."""


def training_data(checkpoint: Path) -> str:
    """``trained on ...``: what a checkpoint folder was trained on, as far as the files around it tell.

    The demo checkpoint's is :data:`DEMO_TRAINING`. A run's ``best/`` or ``last/`` folder has the run's
    ``last/train_args.json`` beside it (``--data``, ``--extra-train``), and a synthetic set's
    ``manifest.json`` (one folder above ``slakh/``) names its SoundFonts; anything else is "unknown".
    """
    if Path(checkpoint).resolve() == DEMO_CHECKPOINT:
        return DEMO_TRAINING
    args_file = Path(checkpoint).parent / "last" / "train_args.json"
    try:
        saved = json.loads(args_file.read_text(encoding="utf-8"))
        data = Path(saved["data"])
    except (OSError, ValueError, KeyError, TypeError):
        return "training data unknown (no train_args.json beside it)"
    text = f"trained on {data}"
    extra = saved.get("extra_train") or []
    if extra:
        text += f" + {len(extra)} more folder(s)"
    try:
        manifest = json.loads((data.parent / "manifest.json").read_text(encoding="utf-8"))
        fonts = [f.get("name") for f in manifest.get("soundfonts") or [manifest.get("soundfont") or {}]]
        text += (f" (synthetic, SoundFont {'+'.join(str(f) for f in fonts)}"
                 f"{', effects' if manifest.get('effects') else ''})")
    except (OSError, ValueError, AttributeError):
        pass
    return text


def check_options(batch_size: int, threshold: float | None) -> None:
    """``--batch-size`` and ``--threshold`` as every command and :class:`Detector` take them."""
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise ActivityError(f"--threshold must be between 0 and 1, got {threshold}")
    if batch_size < 1:
        raise ActivityError(f"--batch-size must be at least 1, got {batch_size}")


@dataclass
class SongScores:
    """Frame-level (75 Hz) scores over the whole songs of a folder, their rolls concatenated in time."""

    songs: int  # songs with MIDI that were scored
    scores: dict[str, Any]  # micro_f1, macro_f1, per_class_f1 (activity.evaluate.frame_scores)
    present_scores: dict[str, Any]  # the same for "present everywhere"


@dataclass
class SplitScores:
    """A checkpoint's scores on one split of the course's clip folders (M clips)."""

    index: Any  # activity.datasets.SplitIndex: files, tracks and labels (M, 9)
    probs: np.ndarray  # (M, 9) float32 clip probabilities
    predictions: np.ndarray  # (M, 9) uint8 at the detector's thresholds
    scores: dict[str, float]  # micro_f1, macro_f1, mAP (activity.evaluate.clip_scores)
    report: str  # scikit-learn's classification_report over the nine classes
    report_dict: dict[str, Any]  # the same as a dict
    rechecked: int = 0  # clips near a threshold scored again in float32 (activity.precision.near_threshold)


class Detector:
    """A trained model with its device, dtype, thresholds and batch size, set once.

    ``model``: a checkpoint folder (``config.json`` + ``model.safetensors`` [+ ``thresholds.json``]) or an
    :class:`~activity.model.ActivityModel` already in memory (used as it is, on its own device unless
    ``device`` is given). ``device``: ``auto`` (CUDA when available; what None means for a checkpoint
    folder), ``cpu``, ``cuda``, ``cuda:N``.
    ``dtype``: ``auto``, ``bf16``, ``fp32`` or ``int8`` (CPU) (:func:`activity.precision.resolve_dtype`; bf16
    and int8 are checked against float32 before use). ``threshold``: one decision threshold for every class instead of the
    checkpoint's tuned ones (0.5 where it has none). ``recheck``: in bf16 or int8, score a split's clips near a
    threshold again in float32 (:meth:`split_probs`), so its report is float32's; False gives the fast path's
    own numbers (training's validation, which tunes the thresholds, and the comparisons of the paths).
    Bad values raise :class:`ActivityError` naming the flag.
    """

    def __init__(self, model: "str | os.PathLike | Any" = DEMO_CHECKPOINT, *, device: Any = None,
                 dtype: Any = "auto", batch_size: int = 8, threshold: float | None = None,
                 recheck: bool = True) -> None:
        check_options(batch_size, threshold)
        if isinstance(model, ActivityModel):
            self.model = model
            self.device = next(model.parameters()).device if device is None else resolve_device(device)
            if next(model.parameters()).device != self.device:
                model.to(self.device)
            self.checkpoint: Path | None = None
        else:
            self.checkpoint = Path(model)
            if self.checkpoint == DEMO_CHECKPOINT and not self.checkpoint.is_dir():
                raise ActivityError(f"the demo checkpoint {self.checkpoint} is missing; pass --ckpt with a trained model folder")
            self.device = resolve_device(device)
            self.model = ActivityModel.from_pretrained(self.checkpoint, device=self.device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.recheck = recheck and dtype_name(self.dtype) != "float32"
        self.batch_size = batch_size
        self.thresholds = as_thresholds(threshold if threshold is not None else self.model.thresholds)
        self.threshold_source = (f"--threshold {threshold}" if threshold is not None
                                 else "saved" if self.model.thresholds is not None else "0.5")

    def describe(self) -> str:
        """One line for logs: the checkpoint (folder, encoder, size, training data where known), device and dtype."""
        parameters = sum(p.numel() for p in self.model.parameters()) / 1e6
        about = f"encoder {self.model.config.encoder}, {parameters:.1f}M parameters"
        if self.checkpoint is not None:
            about += f", {training_data(self.checkpoint)}"
        return f"checkpoint {self.checkpoint or 'in memory'} ({about}); {describe_dtype(self.dtype, self.device)}"

    # ------------------------------------------------------------------------------------------
    # Predictions

    def predict_clips(self, clips: "np.ndarray | Iterable[np.ndarray]") -> "Any":
        """:func:`activity.predict.predict_clips`: ``(B, N)`` clips -> ``clip_probs (B, 9)``, ``frame_probs (B, T, 9)``."""
        return predict_clips(self.model, clips, batch_size=self.batch_size, device=self.device, dtype=self.dtype)

    def predict_song(self, audio: np.ndarray, sample_rate: int, name: str = "audio") -> "Any":
        """:func:`activity.windows.predict_song` for audio in memory (any rate and channel count)."""
        return predict_song(self.model, audio, sample_rate, batch_size=self.batch_size, device=self.device,
                            dtype=self.dtype, name=name)

    def predict_file(self, path: str | os.PathLike, progress: bool | None = None, audio_sink: Any = None) -> "Any":
        """:func:`activity.windows.predict_file`: a whole audio file, read as a stream -> :class:`~activity.windows.SongPrediction`."""
        return predict_file(self.model, path, batch_size=self.batch_size, device=self.device, dtype=self.dtype,
                            progress=progress, audio_sink=audio_sink)

    def analyse_file(self, path: str | os.PathLike, midi: str | os.PathLike | None = None, name: str | None = None,
                     keep_audio: bool = False, min_duration: float | None = None,
                     min_gap: float | None = None) -> "Any":
        """One song, the one per-song pipeline (``infer --audio``, ``plot_pianoroll.py``, :meth:`score_songs`).

        Reads ``path`` once as a stream (:func:`activity.windows.predict_file`), with the audio encoded to OGG
        on the way when ``keep_audio`` (for the HTML view); ``midi``: the song's MIDI, whose truth
        (``(T, 9)`` at 75 Hz, ``(S, 9)`` per 5 s) goes into the result, and the song is scored: frame F1 at
        75 Hz and segment- and event-based F1 (:mod:`activity.sed_metrics`), in ``result.scores``.
        ``name``: the song's name (default: the audio's stem). ``min_duration``/``min_gap``: the event rule
        in seconds (:mod:`activity.events`; defaults there). Returns :class:`~activity.outputs.SongOutputs`.
        """
        min_duration = DEFAULT_MIN_DURATION if min_duration is None else min_duration
        min_gap = DEFAULT_MIN_GAP if min_gap is None else min_gap
        check_rule(min_duration, min_gap)
        path = Path(path)
        encoder = OggEncoder() if keep_audio else None
        song = self.predict_file(path, audio_sink=encoder)
        frame_truth = segment_truth = None
        if midi is not None:
            frame_truth = frame_roll(midi, num_frames=song.frame_probs.shape[0])
            segment_truth = segment_roll(midi, num_segments=song.segment_probs.shape[0])
        name = path.stem if name is None else name
        outputs = SongOutputs.from_prediction(
            song, name, str(path), self.thresholds, min_duration=min_duration, min_gap=min_gap,
            ogg=encoder.finish() if encoder is not None else None, frame_truth=frame_truth, segment_truth=segment_truth)
        if frame_truth is not None:
            outputs.truth = SongTruth(name, outputs.frame_probs, frame_truth, song.duration)
            sed = sed_scores([outputs.truth], self.thresholds, min_duration, min_gap)
            outputs.scores = {"midi": str(midi), "frame": frame_scores(frame_truth, song.frame_probs, self.thresholds),
                              **(sed or {})}
        return outputs

    def predict_and_save(self, path: str | os.PathLike, out: str | os.PathLike, formats: Iterable[str] = ("npz", "csv", "json"),
                         midi: str | os.PathLike | None = None, name: str | None = None,
                         min_duration: float | None = None, min_gap: float | None = None) -> "Any":
        """:meth:`analyse_file`, then its outputs (``formats``, see :mod:`activity.outputs`) written to
        ``out/name.*``, each atomically. Returns the :class:`~activity.outputs.SongOutputs` with ``written``
        (format -> path) set on it."""

        formats = parse_formats(",".join(formats))
        outputs = self.analyse_file(path, midi=midi, name=name, keep_audio="html" in formats,
                                    min_duration=min_duration, min_gap=min_gap)
        outputs.written = write_outputs(outputs, Path(out), formats)
        return outputs

    def split_probs(self, index: Any, progress: bool | None = None) -> np.ndarray:
        """Clip probabilities ``(M, 9)`` of every clip of a :class:`~activity.datasets.SplitIndex`, in its order.

        Clips are read a few batches at a time, so memory stays bounded for a split of any size. In bf16 or
        int8 with ``recheck``, the clips of each few batches with a class within
        :data:`~activity.precision.RECHECK_MARGIN` of its threshold are run again in float32 and their rows
        replaced. ``progress``: a bar on stderr counting clips, advanced after every few batches (None: only
        when stderr is a terminal).
        """
        return self._split_probs(index, progress)[0]

    def _split_probs(self, index: Any, progress: bool | None) -> tuple[np.ndarray, int]:
        """:meth:`split_probs` and how many clips were run again in float32."""
        # A multiple of the batch size, so the batches (and the numbers) are those of one pass over all clips.
        chunk = self.batch_size * max(1, 32 // self.batch_size)
        probs = [np.zeros((0, NUM_CLASSES), np.float32)]
        rechecked = 0
        with tqdm(total=len(index), unit="clip", desc="scoring", file=sys.stderr, leave=False,
                  disable=(not sys.stderr.isatty()) if progress is None else not progress) as bar:
            for start in range(0, len(index), chunk):
                clips = np.stack([load_clip(f)[0] for f in index.files[start : start + chunk]])
                chunk_probs = self._clip_probs(clips, self.dtype)
                # The re-check runs on the clips already in memory: each file is read once.
                rows = np.flatnonzero(near_threshold(chunk_probs, self.thresholds)) if self.recheck else []
                if len(rows):
                    chunk_probs[rows] = self._clip_probs(clips[rows], "fp32")
                    rechecked += len(rows)
                probs.append(chunk_probs)
                bar.update(len(clips))
        return np.concatenate(probs), rechecked

    def _clip_probs(self, clips: np.ndarray, dtype: Any) -> np.ndarray:
        """Clip probabilities ``(B, 9)`` of ``(B, N)`` clips run in ``dtype``."""
        return predict_clips(self.model, clips, batch_size=self.batch_size, device=self.device, dtype=dtype).clip_probs

    def score_split(self, data: str | os.PathLike, split: str = "test") -> SplitScores:
        """Run every clip of ``data/split`` and score it: the course's report, micro/macro-F1 and mAP."""
        index = read_split(Path(data), split)
        warn_length_fixed(index)
        return self.score_index(index)

    def score_songs(self, track_dir: str | os.PathLike) -> SongScores:
        """Run every song of ``track_dir`` (``.flac``/``.wav``/``.ogg`` + ``.mid``) whole (:meth:`analyse_file`)
        and score its 75 Hz roll against the MIDI; songs without MIDI are skipped. Raises
        :class:`ActivityError` if none has one."""

        track_dir = Path(track_dir)
        if not track_dir.is_dir():
            raise ActivityError(f"song folder {track_dir} does not exist")
        truths, probs = [], []
        for track in available_tracks(track_dir):
            audio, midi = find_track(track_dir, track)
            if midi is not None:
                song = self.analyse_file(audio, midi, name=track)
                truths.append(song.frame_truth)
                probs.append(song.frame_probs)
        if not truths:
            raise ActivityError(f"no song in {track_dir} has a MIDI file beside it to score against")
        truth, prob = np.concatenate(truths), np.concatenate(probs)
        return SongScores(songs=len(truths), scores=frame_scores(truth, prob, self.thresholds),
                          present_scores=frame_scores(truth, np.ones_like(prob), 0.5))

    def score_index(self, index: Any) -> SplitScores:
        """:meth:`score_split` for a split already read (a :class:`~activity.datasets.SplitIndex`)."""
        probs, rechecked = self._split_probs(index, None)
        predictions = binarize(probs, self.thresholds)
        return SplitScores(index=index, probs=probs, predictions=predictions,
                           scores=clip_scores(index.labels, probs, self.thresholds),
                           report=classification_report(index.labels, predictions),
                           report_dict=classification_report(index.labels, predictions, as_dict=True),
                           rechecked=rechecked)
