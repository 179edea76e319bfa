"""Which labelled General MIDI programs play a recorded sample of another class, or of a drum kit.

    .venv/bin/python experiments/soundfont_sharing.py [--soundfont PATH]

The synthetic sets are rendered with one SoundFont (pretty_midi's TimGM6mb.sf2 unless a build was
given another). A small font builds many presets from other presets' recordings; when the two belong
to different classes, or one is a drum kit (never a label), only envelopes and filters tell them
apart. Prints one line per labelled program that shares, with the presets and the samples shared.
``experiments/program_recall.py`` splits a checkpoint's recall by the same test.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--soundfont", type=Path, default=None, help="SoundFont to read (default: pretty_midi's TimGM6mb.sf2)")
    return p


def main(argv: list[str] | None = None) -> int:
    from activity.errors import run_command

    return run_command(_run, build_parser().parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    from activity.constants import CLASSES
    from activity.synth.render import resolve_soundfont
    from activity.synth.soundfont import DRUM_BANK, cross_class_sharing, preset_class, read_layout
    from activity.taxonomy import class_of

    path = resolve_soundfont(args.soundfont)
    layout = read_layout(path)

    def describe(key: tuple[int, int]) -> str:
        bank, program = key
        if bank == DRUM_BANK:
            return f"kit {program} {layout.presets[key].name}"
        cls = preset_class(key)
        return f"{program} {layout.presets[key].name} ({CLASSES[cls] if cls is not None else 'no class'})"

    sharing = cross_class_sharing(layout)
    print(f"{path.name}: labelled programs that play a sample of another class or of a drum kit")
    for cls, name in enumerate(CLASSES):
        rows = [(p, others) for p, others in sharing.items() if others and class_of(p) == cls]
        print(f"\n{name}: {len(rows)} of {sum(1 for p in sharing if class_of(p) == cls)} programs share")
        for program, others in rows:
            # Kits repeat one another; name the first kit and count the rest.
            kits = [k for k in others if k[0] == DRUM_BANK]
            shown = [k for k in others if k[0] != DRUM_BANK] + kits[:1]
            extra = f" and {len(kits) - 1} more kits" if len(kits) > 1 else ""
            samples = sorted({s for k in shown for s in layout.shared_samples((0, program), k)})
            print(f"  {describe((0, program))}: {', '.join(describe(k) for k in shown)}{extra}"
                  f" [{', '.join(samples[:3])}{', ...' if len(samples) > 3 else ''}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
