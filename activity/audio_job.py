"""The body of ``python -m activity.infer --audio``: predict each file, write its formats, score it against MIDI.

Each file is predicted by :func:`activity.windows.predict_file` (memory bounded for any
length), written by :func:`activity.outputs.write_outputs`, and, when ``--midi`` gives its MIDI,
scored at three levels: frame F1 (75 Hz, :func:`activity.evaluate.frame_scores`), segment-based F1
on 1 s segments and event-based F1 (:mod:`activity.sed_metrics`, by sed_scores_eval). With more than
one scored song the scores pooled over all of them come last.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile

from .audio import find_audio_files
from .constants import CLASSES, FRAME_RATE, NUM_CLASSES
from .errors import ActivityError
from .evaluate import frame_scores
from .events import check_rule
from .fileio import find_files
from .midi import class_notes, load_midi
from .outputs import check_writable, remove_if_empty
from .sed_metrics import SongTruth, sed_scores

MIDI_SUFFIXES = (".mid", ".midi")
MIDI_SLACK_SECONDS = 2.0
"""A MIDI whose notes end more than this after its audio ends is taken to be another song's."""
MIDI_SHORT_SECONDS = 10.0
"""A MIDI whose notes end more than this (and a quarter of the song) before the audio does is warned about."""


def midi_files(paths: list[Path]) -> list[Path]:
    """Files and folders (searched recursively) -> the MIDI files, sorted within each folder."""
    return find_files(paths, MIDI_SUFFIXES, "--midi")


def pair_midi(audio: list[Path], midi_paths: list[Path] | None) -> dict[Path, Path | None]:
    """Each audio file's MIDI: one audio and one MIDI file pair up whatever their names; otherwise by
    file name without suffix (``song.flac`` <-> ``song.mid``). Audio without a MIDI maps to None."""
    if not midi_paths:
        return {path: None for path in audio}
    midis = midi_files(midi_paths)
    if not midis:
        raise ActivityError(f"--midi: no MIDI files ({', '.join(MIDI_SUFFIXES)}) in {', '.join(map(str, midi_paths))}")
    if len(audio) == 1 and len(midis) == 1:
        return {audio[0]: midis[0]}
    by_stem: dict[str, Path] = {}
    for path in midis:
        if path.stem in by_stem:
            raise ActivityError(f"--midi: two MIDI files for one song name {path.stem!r}: {by_stem[path.stem]} and {path}")
        by_stem[path.stem] = path
    return {path: by_stem.get(path.stem) for path in audio}


def check_midi_length(midi_path: Path, audio_path: Path, duration: float) -> None:
    """Refuse a MIDI whose notes go on well past its audio's end (a wrong pairing, most likely); warn
    when they stop long before it (scored as silence there, which may be right: a long fade-out)."""
    notes = class_notes(midi_path)
    end = max((stop for _, _, stop in notes), default=0.0)
    if end > duration + MIDI_SLACK_SECONDS:
        raise ActivityError(f"--midi {midi_path}: its notes end at {end:.1f} s but {audio_path} is {duration:.1f} s "
                            f"long; is it this song's MIDI?")
    if duration != float("inf") and end < duration - max(MIDI_SHORT_SECONDS, 0.25 * duration):
        print(f"warning: --midi {midi_path}: its notes end at {end:.1f} s but {audio_path} goes on to "
              f"{duration:.1f} s; the rest is scored as silence", file=sys.stderr)


def _seconds(path: Path) -> float:
    """The file's length from its header; an unreadable file is left to the prediction's own error."""
    try:
        return float(soundfile.info(str(path)).duration)
    except Exception:
        return float("inf")


def _print_scores(label: str, frames: dict, sed: dict | None, min_duration: float, min_gap: float) -> None:
    """The three score lines of one song (or of all songs pooled), each saying what its macro-F1 averages.

    The frame macro-F1 is the mean over all nine classes, a class without truth scoring 0 (as in the
    course's report); sed_scores_eval's segment and event macro-F1 are means over the classes with truth
    only, so the two can differ by far on a song with few instruments.
    """
    with_truth = sed["classes"] if sed is not None else []
    without = NUM_CLASSES - len(with_truth)
    print(f"  {label}")
    print(f"    classes with truth: {', '.join(with_truth) or 'none'}")
    frame_note = f"all {NUM_CLASSES} classes"
    if without and with_truth:  # the mean over the classes with truth too, comparable with the lines below
        mean = float(np.mean([frames["per_class_f1"][CLASSES.index(c)] for c in with_truth]))
        frame_note += f"; the {without} without truth score 0; {mean:.4f} over the {len(with_truth)} with truth"
    elif without:
        frame_note += f"; the {without} without truth score 0"
    print(f"    frame-level ({FRAME_RATE} Hz):      micro-F1 {frames['micro_f1']:.4f}  macro-F1 {frames['macro_f1']:.4f}"
          f"  (macro over {frame_note})")
    if sed is None:
        print("    segment / event scores: no class has truth in the MIDI")
        return
    over = f"macro over the {len(with_truth)} with truth"
    print(f"    segment-based (1 s):      micro-F1 {sed['segment']['micro_f1']:.4f}  macro-F1 {sed['segment']['macro_f1']:.4f}"
          f"  ({over}; threshold-free segment AP {sed['segment_ap']:.4f})")
    print(f"    event-based (collar 0.2 s / 20 %): micro-F1 {sed['event']['micro_f1']:.4f}  "
          f"macro-F1 {sed['event']['macro_f1']:.4f}  ({over})")
    print(f"    (events after --min-duration {min_duration:g} s / --min-gap {min_gap:g} s, true rests under --min-gap "
          f"joined too; segment and event scores by sed_scores_eval)")


def run_files(args, formats: tuple[str, ...], load) -> int:
    """Predict, write and score every file of ``args.audio`` (see the module docstring); returns 0.

    Every flag and path is checked before ``load()`` (-> an :class:`~activity.api.Detector`) runs.
    """
    check_rule(args.min_duration, args.min_gap)
    files = find_audio_files(args.audio)
    pairs = pair_midi(files, args.midi)
    out = args.out or Path("predictions")
    created = check_writable(out)
    try:
        return _predict_files(args, files, pairs, out, formats, load)
    except BaseException:
        remove_if_empty(created)  # a run that fails before its first file leaves no empty --out behind
        raise


def _predict_files(args, files: list[Path], pairs: dict[Path, Path | None], out: Path, formats: tuple[str, ...],
                   load) -> int:
    detector = load()
    print(f"model: {detector.describe()}", file=sys.stderr)
    thresholds = detector.thresholds
    scored: list[SongTruth] = []
    stems: dict[str, int] = {}
    for path in files:
        midi_path = pairs[path]
        if midi_path is not None:
            load_midi(midi_path)  # a MIDI that does not parse fails before the prediction, not after
            check_midi_length(midi_path, path, _seconds(path))
        # Two inputs with one name (a/x.wav, b/x.flac) must not overwrite each other's outputs.
        count = stems.get(path.stem, 0)
        stems[path.stem] = count + 1
        name = path.stem if count == 0 else f"{path.stem}-{count + 1}"
        song = detector.predict_and_save(path, out, formats, midi=midi_path, name=name,
                                         min_duration=args.min_duration, min_gap=args.min_gap)
        active = [c for c, on in zip(CLASSES, (song.segment_probs >= thresholds).any(0)) if on]
        suffixes = "/".join(p.name[len(name):] for p in song.written.values())
        print(f"{path}: {song.frame_probs.shape[0]} frames, {song.segment_probs.shape[0]} segments, "
              f"{len(song.events)} events -> {out / name}{{{suffixes}}}; active: {', '.join(active) or 'nothing'}")
        if song.truth is not None:
            scored.append(song.truth)
            sed = {k: v for k, v in song.scores.items() if k not in ("midi", "frame")} or None
            _print_scores(f"scores against {midi_path}:", song.scores["frame"], sed, args.min_duration, args.min_gap)
        elif args.midi:
            print(f"  no MIDI named {path.stem}.mid among --midi: predicted only, no scores")
    if len(scored) > 1:
        pooled_truth = np.concatenate([s.frame_truth for s in scored])
        pooled_probs = np.concatenate([s.frame_probs for s in scored])
        _print_scores(f"all {len(scored)} scored songs pooled:", frame_scores(pooled_truth, pooled_probs, thresholds),
                      sed_scores(scored, thresholds, args.min_duration, args.min_gap), args.min_duration, args.min_gap)
    return 0
