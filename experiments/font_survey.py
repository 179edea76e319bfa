"""The registered SoundFonts side by side: size, presets, samples shared with each other, silent programs.

    .venv/bin/python experiments/font_survey.py

For every font of ``activity.synth.fonts.FONTS`` that is installed: file size, sha256, presets in
bank 0 and drum kits, how many sample names it shares with every other font (how families are told
apart), and the RMS of each General MIDI program playing a 1 s note (velocity 100, in the middle of
the program's range, ``activity.synth.program_range``) rendered by tinysoundfont, so silent or far
too quiet programs show. Fonts that are not installed are listed with the package to install.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quiet-db", type=float, default=-40.0,
                   help="a program whose note RMS is this many dB below the font's median counts as too quiet")
    return p


def main(argv: list[str] | None = None) -> int:
    from activity.errors import run_command

    return run_command(_run, build_parser().parse_args(argv))


def _note_rms(path: Path, program: int, is_drum: bool) -> float:
    import numpy as np
    import pretty_midi

    from activity.synth import program_range
    from activity.synth.render import RENDER_RATE, render_stems

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program, is_drum=is_drum)
    low, high = (35, 81) if is_drum else program_range(program)
    pitch = 38 if is_drum else (low + high) // 2
    inst.notes.append(pretty_midi.Note(velocity=100, pitch=pitch, start=0.0, end=1.0))
    pm.instruments.append(inst)
    audio = render_stems(pm, RENDER_RATE, path)[0]
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def _run(args: argparse.Namespace) -> int:
    import hashlib

    import numpy as np

    from activity.errors import ActivityError
    from activity.synth.fonts import FONTS, HELD_OUT_FONT, font_path
    from activity.synth.soundfont import read_layout

    found: dict[str, tuple[Path, set[str]]] = {}
    for name, spec in FONTS.items():
        try:
            path = font_path(name)
        except ActivityError as exc:
            print(f"{name}: not installed ({exc})")
            continue
        layout = read_layout(path)
        bank0 = sorted(p for b, p in layout.presets if b == 0)
        kits = sorted(p for b, p in layout.presets if b == 128)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        found[name] = (path, set(layout.sample_names))
        rms = np.array([_note_rms(path, p, False) for p in range(128)])
        median = float(np.median(rms[rms > 0])) if (rms > 0).any() else 0.0
        quiet = [p for p in range(128) if rms[p] <= median * 10 ** (args.quiet_db / 20)]
        drum = _note_rms(path, 0, True)
        held = " (held out)" if name == HELD_OUT_FONT else ""
        print(f"{name}{held}: {path} ({path.stat().st_size / 2**20:.1f} MiB, sha256 {digest[:12]}), family {spec.family}, "
              f"package {spec.package or 'pip: pretty_midi'}")
        print(f"  bank 0 programs {len(bank0)}, drum kits {kits}, samples {len(layout.sample_names)}")
        print(f"  note RMS over 128 programs: median {20 * np.log10(median):.1f} dBFS, min {20 * np.log10(max(rms.min(), 1e-12)):.1f} "
              f"(program {int(rms.argmin())}), max {20 * np.log10(rms.max()):.1f} (program {int(rms.argmax())}); "
              f"silent or {-args.quiet_db:g} dB below median: {quiet or 'none'}; snare RMS {20 * np.log10(max(drum, 1e-12)):.1f} dBFS")
    names = list(found)
    print("sample names shared (row font's samples also named in column font):")
    print(" " * 16 + "".join(f"{n[:14]:>15s}" for n in names))
    for a in names:
        print(f"{a[:15]:16s}" + "".join(f"{len(found[a][1] & found[b][1]):15d}" for b in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
