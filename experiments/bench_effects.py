"""Cost of the options of ``activity.synth`` (issue 19): the effects chain per 5 s clip, and font loading.

    OMP_NUM_THREADS=1 .venv/bin/python experiments/bench_effects.py [--songs 10]

In this one process: the first ``--songs`` full-size test songs (seed 0), each rendered with TimGM6mb
(the plain build's work), then put through the stem chains and the mix bus that ``--effects`` draws
for it (``activity.synth.effects``). Reports seconds per 5 s clip of audio for both, and how long
tinysoundfont takes to load every installed registered font, which a build with ``--soundfonts``
pays once per song and font used (see ``activity.synth.render.render_stems_with``).
"""

from __future__ import annotations

import argparse
import sys
import time



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--songs", type=int, default=10, help="full-size test songs to time")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from activity.constants import CLIP_SECONDS
    from activity.errors import ActivityError
    from activity.synth.build import arrange_track_fast, song_option_rngs, song_rngs, track_numbers
    from activity.synth.effects import (apply_chain, apply_mix_chain, draw_mix_chain, draw_room, draw_stem_chain,
                                         room_reverb, split_sends)
    from activity.synth.fonts import FONTS, font_path
    from activity.synth.render import RENDER_RATE, _new_synth, _soundfont_bytes, mix_stems, render_stems

    render_s = effects_s = audio_s = 0.0
    stems = 0
    for track in track_numbers("test", 225)[:args.songs]:
        pm = arrange_track_fast(0, track, "full")
        start = time.perf_counter()
        audio = render_stems(pm, RENDER_RATE)
        mid = time.perf_counter()
        _, effects_rng = song_option_rngs(0, track)
        room = draw_room(effects_rng)
        chains = [split_sends(draw_stem_chain(effects_rng, int(i.program), bool(i.is_drum), room)) for i in pm.instruments]
        wet = [apply_chain(a, RENDER_RATE, plugins) for a, (plugins, _) in zip(audio, chains)]
        bus = draw_mix_chain(effects_rng)
        mix = mix_stems(wet, song_rngs(0, track)[1], sends=[s for _, s in chains], reverb=room_reverb(room))
        apply_mix_chain(mix, RENDER_RATE, bus, effects_rng)
        end = time.perf_counter()
        render_s += mid - start
        effects_s += end - mid
        audio_s += audio[0].shape[0] / RENDER_RATE
        stems += len(audio)
    clips = audio_s / CLIP_SECONDS
    print(f"{args.songs} full-size songs, {audio_s:.0f} s of audio ({clips:.0f} clips of {CLIP_SECONDS:g} s), {stems} stems")
    print("| step | s per song | s per 5 s clip |")
    print("| --- | ---: | ---: |")
    print(f"| render with TimGM6mb (plain build) | {render_s / args.songs:.3f} | {render_s / clips:.4f} |")
    print(f"| --effects: stem chains + mix bus (pedalboard) | {effects_s / args.songs:.3f} | {effects_s / clips:.4f} |")
    print("\n| font | MiB | load (s) |")
    print("| --- | ---: | ---: |")
    for name in FONTS:
        try:
            path = font_path(name)
        except ActivityError:
            print(f"| {name} | - | not installed |")
            continue
        _soundfont_bytes(str(path))  # the file read once per process, as in a build
        start = time.perf_counter()
        _new_synth(path, RENDER_RATE)
        print(f"| {name} | {path.stat().st_size / 2**20:.1f} | {time.perf_counter() - start:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
