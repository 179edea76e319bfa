"""Speed of the synthetic Slakh build: clips per second, and the time of the demo and full sizes.

    .venv/bin/python experiments/bench_synth.py [--workers 2] [--full-songs 60] [--skip-demo]

Builds the whole demo size into a temporary folder (its real time), then a sample of full-size songs
(about 50 s each) with the same code path, and extrapolates the full size (2100 songs) from that.
Prints a markdown table for experiments/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Benchmark the synthetic Slakh build.")
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="parallel processes")
    p.add_argument("--full-songs", type=int, default=60, help="full-size songs to time for the extrapolation")
    p.add_argument("--skip-demo", action="store_true", help="do not build the demo size")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from activity.synth.build import SIZES, _run_jobs, build_dataset, track_numbers
    from activity.synth.render import default_soundfont

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        if not args.skip_demo:
            start = time.perf_counter()
            manifest = build_dataset(Path(tmp) / "demo", size="demo", workers=args.workers, progress=False)
            seconds = time.perf_counter() - start
            clips = manifest["overall"]["clips"]
            rows.append(("demo (built)", manifest["overall"]["songs"], clips, seconds))

        full = SIZES["full"]
        jobs = []
        for split in ("train", "validation", "test"):
            # The sample keeps the splits' proportions so flac writing (test only) is counted fairly.
            share = round(args.full_songs * full.songs[split] / sum(full.songs.values()))
            jobs += [(str(Path(tmp) / "full"), split, t, 0, "full", str(default_soundfont()))
                     for t in track_numbers(split, max(share, 1))]
        start = time.perf_counter()
        records = _run_jobs(jobs, args.workers, progress=False)
        seconds = time.perf_counter() - start
        clips = sum(len(r["clips"]) for r in records)
        rows.append((f"full sample ({len(jobs)} songs)", len(jobs), clips, seconds))
        total_songs = sum(full.songs.values())
        rows.append(("full (extrapolated)", total_songs, round(clips / len(jobs) * total_songs),
                     seconds / len(jobs) * total_songs))

    print(f"workers: {args.workers}")
    print("| build | songs | clips | time | clips/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, songs, clips, seconds in rows:
        print(f"| {name} | {songs} | {clips} | {seconds / 60:.1f} min ({seconds:.0f} s) | {clips / seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
