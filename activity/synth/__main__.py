"""``python -m activity.synth``: build the synthetic Slakh set (course layout + whole test songs)."""

from __future__ import annotations

# A command line: torch, the model and the data are imported inside the functions, after the arguments are
# parsed, so `--help` and a bad flag answer at once (start-up time).

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from .build import DEFAULT_DATA_ROOT, FONT_PER, SIZES, SPLITS
    from .fonts import FONTS, HELD_OUT_FONT

    sizes = ", ".join(f"{name}: {sum(s.songs.values())} songs of {s.min_seconds:g}-{s.max_seconds:g} s"
                      for name, s in SIZES.items())
    p = argparse.ArgumentParser(
        prog="python -m activity.synth",
        description="Build a synthetic Slakh set: procedural General MIDI songs rendered stem by stem with a "
                    "SoundFont, cut into the course's 5 s clips with labels from the notes. "
                    "OUT/slakh holds {train,validation,test}/TrackNNNNN_k.npy, {split}_labels.json and midi/; "
                    "OUT/test_track holds the whole test songs (.flac at 44.1 kHz + .mid).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=DEFAULT_DATA_ROOT, help="folder to build the set in")
    p.add_argument("--size", choices=tuple(SIZES), default="demo", help=f"how many songs ({sizes})")
    p.add_argument("--seed", type=int, default=0, help="same seed and size give byte-identical files")
    p.add_argument("--soundfont", type=Path, default=None,
                   help="an .sf2/.sf3 General MIDI SoundFont (default: pretty_midi's TimGM6mb.sf2)")
    fonts = ", ".join(f"{n} ({s.package or 'pip'})" for n, s in FONTS.items())
    p.add_argument("--soundfonts", nargs="+", default=None, metavar="NAME_OR_PATH",
                   help=f"several SoundFonts, drawn per stem or per song (--font-per) and recorded in the manifest: "
                        f"registered names with their Debian package ({fonts}) or .sf2/.sf3 paths. "
                        f"{HELD_OUT_FONT} is the held-out font of experiments/cross_font.py: keep it out of training sets")
    p.add_argument("--font-per", choices=FONT_PER, default="stem",
                   help="with --soundfonts: draw a font for every stem, or one for all stems of a song")
    p.add_argument("--effects", action="store_true",
                   help="a seeded pedalboard chain: per stem filters, EQ, compression, drive on guitar-like stems, "
                        "chorus, reverb; on the mix bus compression, gain and noise (activity.synth.effects)")
    p.add_argument("--absence", action="store_true",
                   help="more songs without bass, piano or guitar (absent from 25%%, 40%%, 30%% of songs instead of 6.5%%, 11%%, 8%%)")
    p.add_argument("--stems", action="store_true",
                   help="also keep every training clip's stems by class in OUT/slakh/stems/train/ (float16, for train "
                        "--remix-prob): about 3 times the training clips' disk space (6 groups of 240 KB per clip)")
    p.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS),
                   help="build only these splits (their songs are those of a build of all three); "
                        "test alone is what `make demo` scores")
    p.add_argument("--workers", type=int, default=None, help="songs rendered in parallel (default: number of CPUs)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an interrupted build in OUT, keeping finished songs")
    mode.add_argument("--overwrite", action="store_true", help="delete a previous set in OUT and build anew")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages, only the summary")
    return p


def _summary(manifest: dict) -> str:
    from ..constants import CLASSES

    rows = ["split        songs  clips  " + "  ".join(f"{c[:6]:>6s}" for c in CLASSES)]
    for split, info in list(manifest["splits"].items()) + [("overall", manifest["overall"])]:
        shares = "  ".join(f"{100 * info['class_shares'][c]:5.1f}%" for c in CLASSES)
        rows.append(f"{split:<11s} {info['songs']:6d} {info['clips']:6d}  {shares}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..errors import ActivityError
    from .build import build_dataset

    try:
        manifest = build_dataset(args.out, size=args.size, seed=args.seed, soundfont=args.soundfont,
                                 overwrite=args.overwrite, resume=args.resume, workers=args.workers,
                                 progress=not args.quiet, soundfonts=args.soundfonts, font_per=args.font_per,
                                 effects=args.effects, absence=args.absence, splits=tuple(args.splits),
                                 stems=args.stems)
    except ActivityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: finished songs are kept; run again with --resume to continue in {args.out}", file=sys.stderr)
        return 130
    fonts = "+".join(f["name"] for f in manifest["soundfonts"]) if "soundfonts" in manifest else manifest["soundfont"]["name"]
    extras = "".join(f", {key}" for key in ("effects", "absence", "stems") if key in manifest)
    print(f"synthetic Slakh set in {args.out} (size {manifest['size']}, seed {manifest['seed']}, "
          f"{fonts}{extras}); share of clips on per class:")
    print(_summary(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
