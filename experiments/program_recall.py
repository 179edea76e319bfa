"""Which instruments a checkpoint misses or mistakes: per-program recall inside each class, on one split.

    .venv/bin/python experiments/program_recall.py --ckpt checkpoints/demo --data data/synth-slakh/slakh --split test

A class such as Percussion joins very different sounds (mallets and bells, but also taiko, melodic tom,
synth drum and reverse cymbal, GM programs 112-119). For every clip that is positive for a class, the
programs of that class sounding in the clip (notes overlapping its 5 s window, from DATA/midi/) are
counted, with how many of those clips the checkpoint's thresholded prediction caught. For the false
positives of a class, the programs that were playing instead are counted. Needs the songs' MIDI, so it
runs on the synthetic sets (or the course's data with Slakh's MIDI copied to DATA/midi/).

With ``--soundfont`` (the SoundFont the set was rendered with; pretty_midi's TimGM6mb.sf2 by default)
each class's recall is also split by whether a program plays a recorded sample that a preset of
another class, or a drum kit, also plays (activity.synth.soundfont.cross_class_sharing).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", type=Path, default=REPO / "checkpoints" / "demo", help="checkpoint folder")
    p.add_argument("--data", type=Path, default=REPO / "data" / "synth-slakh" / "slakh",
                   help="the course's slakh/ layout with midi/TrackNNNNN.mid")
    p.add_argument("--split", default="test", help="split to score")
    p.add_argument("--classes", default="Percussion,Organ,Voice,Wind Instruments,Synth",
                   help="comma-separated class names to report")
    p.add_argument("--soundfont", type=Path, default=None,
                   help="SoundFont the set was rendered with (default: pretty_midi's TimGM6mb.sf2)")
    return p


def programs_in_window(pm, start: float, end: float) -> dict[int, set[int]]:
    """Class index -> GM programs with a note overlapping ``[start, end)`` seconds."""
    from activity.taxonomy import class_of

    playing: dict[int, set[int]] = {}
    for instrument in pm.instruments:
        cls = class_of(int(instrument.program), bool(instrument.is_drum))
        if cls is not None and any(n.start < end and n.end > start and n.end > n.start for n in instrument.notes):
            playing.setdefault(cls, set()).add(int(instrument.program))
    return playing


def main(argv: list[str] | None = None) -> int:
    from activity.errors import run_command

    return run_command(_run, build_parser().parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    import pretty_midi

    from activity.constants import CLASSES, CLIP_SECONDS
    from activity.datasets import MIDI_FOLDER, read_split
    from activity.evaluate import binarize
    from activity.api import Detector
    from activity.midi import load_midi
    from activity.synth.render import resolve_soundfont
    from activity.synth.soundfont import cross_class_sharing, read_layout

    wanted = [name.strip() for name in args.classes.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in CLASSES]
    if unknown:
        raise SystemExit(f"--classes: unknown {', '.join(unknown)}; choose from {', '.join(CLASSES)}")
    soundfont = resolve_soundfont(args.soundfont)
    sharing = cross_class_sharing(read_layout(soundfont))
    detector = Detector(args.ckpt)
    index = read_split(args.data, args.split)
    predicted = binarize(detector.split_probs(index), detector.thresholds)

    caught: dict[int, Counter] = {c: Counter() for c in range(len(CLASSES))}
    positives: dict[int, Counter] = {c: Counter() for c in range(len(CLASSES))}
    instead: dict[int, Counter] = {c: Counter() for c in range(len(CLASSES))}
    songs: dict[str, object] = {}
    for i, (track, segment) in enumerate(zip(index.tracks, index.segments)):
        if track is None or segment is None:
            continue
        if track not in songs:
            songs[track] = load_midi(args.data / MIDI_FOLDER / f"{track}.mid")
        playing = programs_in_window(songs[track], segment * CLIP_SECONDS, (segment + 1) * CLIP_SECONDS)
        for c in range(len(CLASSES)):
            if index.labels[i, c]:
                for program in playing.get(c, ()):
                    positives[c][program] += 1
                    caught[c][program] += int(predicted[i, c])
            elif predicted[i, c]:
                for programs in playing.values():
                    instead[c].update(programs)

    print(f"{args.ckpt} on {len(index)} {args.split} clips of {args.data} (thresholds of the checkpoint)")
    for name in wanted:
        c = CLASSES.index(name)
        rows = ", ".join(f"{p} {pretty_midi.program_to_instrument_name(p)} {caught[c][p]}/{n}"
                         for p, n in sorted(positives[c].items()))
        print(f"\n{name}: caught / positive clips per program\n  {rows}")
        common = ", ".join(f"{p} {pretty_midi.program_to_instrument_name(p)} ({n})" for p, n in instead[c].most_common(6))
        print(f"  false positives ({int((predicted[:, c] & (1 - index.labels[:, c])).sum())}) "
              f"most often had: {common or 'none'}")
        print(f"  {_recall_by_sharing(caught[c], positives[c], sharing)}")

    print(f"\nAll classes: {_recall_by_sharing(sum(caught.values(), Counter()), sum(positives.values(), Counter()), sharing)}")
    print(f"(sharing: a program plays a sample that a preset of another class or a drum kit plays in {soundfont.name})")
    return 0


def _recall_by_sharing(caught: Counter, positives: Counter, sharing: dict[int, list]) -> str:
    """'caught/positive (recall)' for programs that share samples across classes and for the rest."""
    parts = []
    for title, shares in (("programs sharing samples", True), ("programs with their own samples", False)):
        hit = sum(n for p, n in caught.items() if bool(sharing.get(p)) == shares)
        total = sum(n for p, n in positives.items() if bool(sharing.get(p)) == shares)
        parts.append(f"{title} {hit}/{total}" + (f" ({hit / total:.2f})" if total else ""))
    return "; ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
