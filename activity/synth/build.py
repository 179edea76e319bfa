"""The synthetic Slakh set on disk: layout, per-song determinism, resume, and the manifest.

Layout under ``OUT`` (the course's, plus what training and plotting need)::

    slakh/{train,validation,test}/TrackNNNNN_k.npy   float32 mono, 120000 samples at 24 kHz
    slakh/{split}_labels.json                       file name -> 9 ints, keys sorted
    slakh/midi/TrackNNNNN.mid                       every song's full MIDI (time 0 = sample 0)
    slakh/stems/train/TrackNNNNN_k.npz              with --stems: a training clip's stems by class (activity.remix)
    test_track/TrackNNNNN.{flac,mid}                whole test songs, 44.1 kHz, all instruments
    manifest.json                                   written last: the set is complete when it exists
    .progress/                                      build parameters and one record per finished song

Song ``n`` is drawn from its own generator seeded with ``(seed, n)``, so a song does not depend on
which worker made it, on the order songs finish or on an interruption: a resumed build is
byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import functools
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constants import CLASSES, CLIP_SAMPLES, CLIP_SECONDS, NUM_CLASSES, SAMPLE_RATE
from ..errors import ActivityError
from ..fileio import atomic_path, write_json
from .arranger import ABSENCE_RATES, PART_DRAWS, arrange_song, clip_labels
from .render import (RENDER_RATE, check_soundfont, mix_stems, render_song, render_stems_with, resolve_soundfont,
                     soundfont_sha256)

DEFAULT_DATA_ROOT: Path = Path(__file__).resolve().parents[2] / "data" / "synth-slakh"
"""``data/synth-slakh`` under the repository root (git-ignored), wherever the command runs from."""

SPLITS = ("train", "validation", "test")
FORMAT_VERSION = 1
PROGRESS = ".progress"
MANIFEST = "manifest.json"
# The only entries of OUT a build creates, hence the only ones --overwrite may delete.
OWN_ENTRIES = ("slakh", "test_track", MANIFEST, PROGRESS)

TRACK_BANDS: dict[str, tuple[int, int]] = {"train": (1, 1500), "validation": (1501, 1875), "test": (1876, 2100)}
"""Slakh2100's numbering of the course's splits (first, last track number, inclusive)."""

EXAMPLE_TRACK = 1950
"""The course's ``plot_pianoroll.py --track Track01950`` example: in the test split at every size."""


STEM_SPLIT = "train"
"""The one split whose stems ``--stems`` keeps: only training remixes, and stems cost 3x a clip's disk."""

FONT_PER = ("stem", "song")
"""How a build with several SoundFonts draws them: one per stem, or one per song for all its stems."""


@dataclass(frozen=True)
class SynthOptions:
    """How songs are rendered beyond size and seed: SoundFonts (paths and names, in the order given),
    how fonts are drawn (:data:`FONT_PER`), the effects chain (:mod:`activity.synth.effects`), and
    :data:`~activity.synth.arranger.ABSENCE_RATES` for bass, piano and guitar, and whether each clip's
    stems are kept for training-time remixing (:mod:`activity.remix`)."""

    fonts: tuple[str, ...]
    font_names: tuple[str, ...]
    font_per: str = "stem"
    effects: bool = False
    absence: bool = False
    stems: bool = False

    @property
    def plain(self) -> bool:
        """One font and no effects: songs are rendered exactly as before these options existed."""
        return len(self.fonts) == 1 and not self.effects


@dataclass(frozen=True)
class SizeSpec:
    """Songs per split and the range of song lengths in seconds."""

    songs: dict[str, int]
    min_seconds: float
    max_seconds: float


SIZES: dict[str, SizeSpec] = {
    "tiny": SizeSpec({"train": 4, "validation": 2, "test": 2}, 16.0, 21.0),
    "demo": SizeSpec({"train": 200, "validation": 50, "test": 50}, 25.0, 35.0),
    "full": SizeSpec({"train": 1500, "validation": 375, "test": 225}, 50.0, 58.0),
}


def track_name(number: int) -> str:
    return f"Track{number:05d}"


def track_numbers(split: str, count: int) -> list[int]:
    """``count`` track numbers inside the split's Slakh band; the test split always has 1950."""
    first, last = TRACK_BANDS[split]
    if count > last - first + 1:
        raise ValueError(f"{split} holds at most {last - first + 1} songs, asked for {count}")
    if split == "test":
        first = max(first, min(EXAMPLE_TRACK, last - count + 1))
    return list(range(first, first + count))


def song_rngs(seed: int, track: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for a song's arrangement and for its mix, from ``(seed, track)``."""
    arrange_seq, mix_seq = np.random.SeedSequence([seed, track]).spawn(2)
    return np.random.default_rng(arrange_seq), np.random.default_rng(mix_seq)


def song_option_rngs(seed: int, track: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Generators for a song's font choice and effects chain, independent of :func:`song_rngs`'.

    ``SeedSequence.spawn(4)`` starts with the two children ``spawn(2)`` gives, so turning options on
    leaves the arrangement and the stem levels of every song as they were.
    """
    font_seq, effects_seq = np.random.SeedSequence([seed, track]).spawn(4)[2:]
    return np.random.default_rng(font_seq), np.random.default_rng(effects_seq)


def split_of(track: int) -> str:
    """The split whose Slakh band holds track number ``track``."""
    for split, (first, last) in TRACK_BANDS.items():
        if first <= track <= last:
            return split
    raise ValueError(f"track {track} is outside every split's band {TRACK_BANDS}")


@functools.lru_cache(maxsize=16)
def split_draws(seed: int, split: str, count: int) -> tuple[dict[str, float], ...]:
    """Part choices of a split's ``count`` songs (in track order), spread evenly over [0, 1).

    For each :data:`PART_DRAWS` key the songs get ``(perm[i] + jitter[i]) / count`` with a seeded
    permutation: every song still sees a uniform number, but a part played with probability ``p``
    plays in ``p * count`` songs rounded up or down, not in a binomial count. Independent draws
    put a 50-song split's class shares up to 11 points off the course's; with these, what remains is
    how much of each song a part covers (see experiments/RESULTS.md for the spread over seeds).
    """
    columns = {}
    for i, key in enumerate(PART_DRAWS):
        rng = np.random.default_rng(np.random.SeedSequence([seed, list(TRACK_BANDS).index(split), i]))
        columns[key] = (rng.permutation(count) + rng.random(count)) / count
    return tuple({key: float(columns[key][j]) for key in PART_DRAWS} for j in range(count))


def arrange_track(seed: int, track: int, size: str, absence: bool = False) -> "pretty_midi.PrettyMIDI":  # noqa: F821
    """The song a build of ``size`` with ``seed`` makes for ``track``, read back from its MIDI bytes."""
    pm, _, _ = _arrange_with_bytes(seed, track, size, absence)
    return pm


def arrange_track_fast(seed: int, track: int, size: str, absence: bool = False) -> "pretty_midi.PrettyMIDI":  # noqa: F821
    """:func:`arrange_track` without the MIDI round trip: the same notes to the tick, 3x faster."""
    return _arrange(seed, track, size, absence)[0]


def _arrange(seed: int, track: int, size: str, absence: bool = False
             ) -> tuple["pretty_midi.PrettyMIDI", np.random.Generator]:  # noqa: F821
    arrange_rng, mix_rng = song_rngs(seed, track)
    spec = SIZES[size]
    duration = float(arrange_rng.uniform(spec.min_seconds, spec.max_seconds))
    rates = ABSENCE_RATES if absence else None
    return arrange_song(arrange_rng, duration, _draws_of(seed, track, size), rates), mix_rng


def _draws_of(seed: int, track: int, size: str) -> dict[str, float]:
    split = split_of(track)
    tracks = track_numbers(split, SIZES[size].songs[split])
    if track not in tracks:
        raise ValueError(f"track {track} is not in the {split} split of a {size} build")
    return split_draws(seed, split, len(tracks))[tracks.index(track)]


def _arrange_with_bytes(seed: int, track: int, size: str, absence: bool = False):
    import pretty_midi

    pm, mix_rng = _arrange(seed, track, size, absence)
    buffer = io.BytesIO()
    pm.write(buffer)
    data = buffer.getvalue()
    # Audio and labels come from the MIDI as read back from its bytes, so the file on disk, the
    # labels and the audio agree to the tick.
    return pretty_midi.PrettyMIDI(io.BytesIO(data)), data, mix_rng


# ------------------------------------------------------------------------------------- one song


def _song_paths(out: Path, split: str, name: str, num_clips: int, stems: bool = False) -> list[Path]:
    from ..remix import stems_path

    paths = [out / "slakh" / split / f"{name}_{k}.npy" for k in range(num_clips)]
    if stems and split == STEM_SPLIT:
        paths += [stems_path(out / "slakh", split, f"{name}_{k}.npy") for k in range(num_clips)]
    paths.append(out / "slakh" / "midi" / f"{name}.mid")
    if split == "test":
        paths += [out / "test_track" / f"{name}.flac", out / "test_track" / f"{name}.mid"]
    return paths


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _write_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:  # a file object: np.save would append .npy to a name
            np.save(handle, array, allow_pickle=False)


def _write_flac(path: Path, audio: np.ndarray, rate: int) -> None:
    import soundfile

    with atomic_path(path) as tmp:
        soundfile.write(str(tmp), audio, rate, format="FLAC", subtype="PCM_16")


def render_with_options(pm: "pretty_midi.PrettyMIDI", seed: int, track: int, options: SynthOptions,  # noqa: F821
                        mix_rng: np.random.Generator, contributions: list[np.ndarray] | None = None
                        ) -> tuple[np.ndarray, dict]:
    """The mix of a song with several fonts and/or effects, mono float32 ``(N,)`` at RENDER_RATE,
    and what was drawn: ``{"fonts": font name per stem, "effects": {"room", "stems", "mix"}}``.
    ``contributions`` receives each stem's share of the mix before the bus chain (``render.mix_stems``)."""
    font_rng, effects_rng = song_option_rngs(seed, track)
    count = len(pm.instruments)
    if options.font_per == "song":
        choice = [int(font_rng.integers(len(options.fonts)))] * count
    else:
        choice = [int(k) for k in font_rng.integers(len(options.fonts), size=count)]
    stems = render_stems_with(pm, RENDER_RATE, [Path(f) for f in options.fonts], choice)
    drawn: dict = {"fonts": [options.font_names[k] for k in choice]}
    if options.effects:
        from .effects import apply_chain, apply_mix_chain, draw_mix_chain, draw_room, draw_stem_chain, room_reverb, split_sends

        room = draw_room(effects_rng)
        chains = [draw_stem_chain(effects_rng, int(inst.program), bool(inst.is_drum), room) for inst in pm.instruments]
        sends = []
        for i, chain in enumerate(chains):
            plugins, send = split_sends(chain)
            stems[i] = apply_chain(stems[i], RENDER_RATE, plugins)
            sends.append(send)
        bus = draw_mix_chain(effects_rng)
        mix = mix_stems(stems, mix_rng, sends=sends, reverb=room_reverb(room), contributions=contributions)
        mix = apply_mix_chain(mix, RENDER_RATE, bus, effects_rng)
        drawn["effects"] = {"room": room, "stems": [[[n, p] for n, p in chain] for chain in chains], "mix": bus}
    else:
        mix = mix_stems(stems, mix_rng, contributions=contributions)
    return mix, drawn


def build_song(out: str, split: str, track: int, seed: int, size: str, soundfont: str,
               options: SynthOptions | None = None) -> dict:
    """Arrange, render and write one song; returns its record (clip name -> labels).

    ``options`` (several fonts, effects, absence) default to one font, ``soundfont``, and none.
    The song's files are written first, each atomically; the record under ``.progress`` last, so a
    song counts as done only when all of its files are complete.
    """
    from ..audio import fix_length, resample

    root = Path(out)
    name = track_name(track)
    absence = options is not None and options.absence
    pm, midi_bytes, mix_rng = _arrange_with_bytes(seed, track, size, absence)
    drawn: dict = {}
    contributions: list[np.ndarray] | None = [] if options is not None and options.stems and split == STEM_SPLIT else None
    if options is None or options.plain:
        mix = render_song(pm, RENDER_RATE, soundfont, mix_rng, contributions=contributions)
    else:
        mix, drawn = render_with_options(pm, seed, track, options, mix_rng, contributions)
    mix24 = resample(mix, RENDER_RATE, SAMPLE_RATE)
    peak = float(np.max(np.abs(mix24)))
    scale = 1.0
    if peak >= 0.999:  # resampling overshoot: turn both versions down alike
        scale = 0.99 / peak
        mix *= scale
        mix24 = (mix24 * scale).astype(np.float32)
    labels = clip_labels(pm)
    num_clips = labels.shape[0]
    mix24 = fix_length(mix24, max(mix24.shape[0], num_clips * CLIP_SAMPLES))
    clips: dict[str, list[int]] = {}
    for k in range(num_clips):
        clip_name = f"{name}_{k}.npy"
        clip = np.ascontiguousarray(mix24[k * CLIP_SAMPLES:(k + 1) * CLIP_SAMPLES], dtype=np.float32)
        _write_npy(root / "slakh" / split / clip_name, clip)
        clips[clip_name] = [int(v) for v in labels[k]]
    if contributions is not None:
        _write_song_stems(root / "slakh", split, name, pm, contributions, scale, num_clips)
    if split == "test":
        _write_flac(root / "test_track" / f"{name}.flac", mix, RENDER_RATE)
        _write_bytes(root / "test_track" / f"{name}.mid", midi_bytes)
    _write_bytes(root / "slakh" / "midi" / f"{name}.mid", midi_bytes)
    record = {"track": name, "split": split, "seconds": round(mix.shape[0] / RENDER_RATE, 6),
              "instruments": [[int(i.program), bool(i.is_drum)] for i in pm.instruments], "clips": clips, **drawn}
    write_json(root / PROGRESS / f"{name}.json", record)
    return record


def _write_song_stems(data: Path, split: str, name: str, pm: "pretty_midi.PrettyMIDI",  # noqa: F821
                      contributions: list[np.ndarray], scale: float, num_clips: int) -> None:
    """Every clip's stems summed by group (:mod:`activity.remix`), resampled to 24 kHz and scaled like the mix."""
    from ..audio import fix_length, resample
    from ..remix import SILENT_ROW, group_of, stems_path, write_clip_stems

    groups = [group_of(int(inst.program), bool(inst.is_drum)) for inst in pm.instruments]
    present = sorted(set(groups))
    rows = []
    for group in present:
        summed = np.sum([c for c, g in zip(contributions, groups) if g == group], axis=0, dtype=np.float64)
        row = resample(summed.astype(np.float32), RENDER_RATE, SAMPLE_RATE) * scale
        rows.append(fix_length(row.astype(np.float32), max(row.shape[0], num_clips * CLIP_SAMPLES)))
    for k in range(num_clips):
        piece = np.stack([row[k * CLIP_SAMPLES:(k + 1) * CLIP_SAMPLES] for row in rows])
        audible = np.max(np.abs(piece), axis=1) > SILENT_ROW
        path = stems_path(data, split, f"{name}_{k}.npy")
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            write_clip_stems(handle, piece[audible], np.asarray(present)[audible])


def _build_song_job(job: tuple) -> dict:
    return build_song(*job)


# ----------------------------------------------------------------------------------- dataset state


def read_manifest(out: Path) -> dict | None:
    """The manifest of a complete set in ``out``, or ``None`` (missing, unreadable, incomplete)."""
    path = Path(out) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("complete") is True else None


def _files_match(out: Path, manifest: dict) -> bool:
    """A cheap check that the files a manifest promises are there (counts, not contents)."""
    try:
        for split in manifest["splits"]:
            info = manifest["splits"][split]
            if not (out / "slakh" / f"{split}_labels.json").is_file():
                return False
            if sum(1 for n in os.listdir(out / "slakh" / split) if n.endswith(".npy")) != info["clips"]:
                return False
        if "test" not in manifest["splits"]:
            return True
        flacs = sum(1 for n in os.listdir(out / "test_track") if n.endswith(".flac"))
        return flacs == manifest["splits"]["test"]["songs"]
    except (OSError, KeyError, TypeError):
        return False


def is_complete(out: str | os.PathLike, splits: tuple[str, ...] = ()) -> bool:
    """Whether ``out`` holds a finished synthetic set (manifest written and its files present)
    with at least the ``splits`` named (any when empty)."""
    manifest = read_manifest(Path(out))
    return manifest is not None and all(s in manifest["splits"] for s in splits) and _files_match(Path(out), manifest)


# Keys a build writes only when they differ from the defaults, so that a plain build's manifest
# (and every set built before they existed) reads as it always did.
_OPTION_KEYS = ("soundfonts", "font_per", "effects", "absence", "stems", "built_splits")


def _params(size: str, seed: int, soundfont: Path, options: SynthOptions | None = None,
            splits: tuple[str, ...] = SPLITS) -> dict:
    params = {"format_version": FORMAT_VERSION, "size": size, "seed": seed,
              "soundfont": {"name": soundfont.name, "sha256": soundfont_sha256(soundfont)}}
    if options is not None and len(options.fonts) > 1:
        params["soundfonts"] = [{"name": n, "file": Path(f).name, "sha256": soundfont_sha256(f)}
                                for n, f in zip(options.font_names, options.fonts)]
        params["font_per"] = options.font_per
    if options is not None and options.effects:
        from .effects import EFFECTS_VERSION

        params["effects"] = {"library": "pedalboard", "version": _pedalboard_version(), "chain_version": EFFECTS_VERSION}
    if options is not None and options.absence:
        params["absence"] = dict(ABSENCE_RATES)
    if options is not None and options.stems:
        from ..remix import STEMS_FOLDER

        params["stems"] = {"folder": f"slakh/{STEMS_FOLDER}/{STEM_SPLIT}", "dtype": "float16",
                           "groups": "class index, 9 = no class"}
    if tuple(splits) != SPLITS:
        params["built_splits"] = list(splits)
    return params


def _pedalboard_version() -> str:
    import pedalboard

    return str(pedalboard.__version__)


def _same_params(found: dict, wanted: dict) -> bool:
    keys = ("format_version", "size", "seed") + _OPTION_KEYS
    return all(found.get(k) == wanted.get(k) for k in keys) and \
        (found.get("soundfont") or {}).get("sha256") == wanted["soundfont"]["sha256"]


def _describe(params: dict) -> str:
    font = params.get("soundfont") or {}
    fonts = params.get("soundfonts")
    text = f"size={params.get('size')}, seed={params.get('seed')}, "
    if fonts:
        text += f"soundfonts={'+'.join(str(f.get('name')) for f in fonts)} per {params.get('font_per')}"
    else:
        text += f"soundfont={font.get('name')} (sha256 {str(font.get('sha256'))[:12]})"
    for key in ("effects", "absence", "stems", "built_splits"):
        if params.get(key):
            text += f", {key}={params[key] if key == 'built_splits' else 'on'}"
    return text


def _clear(out: Path) -> None:
    """Delete what a build made in ``out``; refuse when ``out`` holds anything else."""
    import shutil

    foreign = sorted(p.name for p in out.iterdir() if p.name not in OWN_ENTRIES)
    if foreign:
        raise ActivityError(f"--overwrite refused: {out} holds files that are not part of a synthetic set "
                            f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); choose another --out")
    # The manifest goes first, so an interrupted delete never leaves a set that looks complete.
    (out / MANIFEST).unlink(missing_ok=True)
    for entry in OWN_ENTRIES:
        path = out / entry
        if path.is_dir():
            shutil.rmtree(path)


def _remove_stale_temporaries(out: Path) -> int:
    """Temporary files of writes a killed build never finished (``.name.XXXX.tmp``)."""
    removed = 0
    for entry in OWN_ENTRIES:
        base = out / entry
        if not base.is_dir():
            continue
        for path in base.rglob(".*.tmp"):
            if path.is_file():
                path.unlink()
                removed += 1
    for path in out.glob(".*.tmp"):
        path.unlink()
        removed += 1
    return removed


def _finished_record(out: Path, split: str, track: int, stems: bool = False) -> dict | None:
    """The record of a song a previous run finished, when all of its files are still there."""
    name = track_name(track)
    try:
        record = json.loads((out / PROGRESS / f"{name}.json").read_text(encoding="utf-8"))
        clips = record["clips"]
        if record["split"] != split or not isinstance(clips, dict):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if all(p.is_file() for p in _song_paths(out, split, name, len(clips), stems)):
        return record
    return None


def _shares(labels: list[list[int]]) -> dict[str, float]:
    array = np.asarray(labels, dtype=np.float64).reshape(-1, NUM_CLASSES)
    means = array.mean(axis=0) if array.shape[0] else np.zeros(NUM_CLASSES)
    return {name: round(float(m), 4) for name, m in zip(CLASSES, means)}


def _manifest(params: dict, records: dict[str, list[dict]]) -> dict:
    splits: dict[str, dict] = {}
    all_labels: list[list[int]] = []
    for split in params.get("built_splits", SPLITS):
        labels = [lab for r in records[split] for lab in r["clips"].values()]
        all_labels += labels
        tracks = sorted(r["track"] for r in records[split])
        splits[split] = {"songs": len(tracks), "clips": len(labels), "first_track": tracks[0] if tracks else None,
                         "last_track": tracks[-1] if tracks else None, "class_shares": _shares(labels)}
    manifest = {
        "complete": True,
        **params,
        "classes": list(CLASSES),
        "sample_rate": SAMPLE_RATE,
        "render_rate": RENDER_RATE,
        "clip_seconds": CLIP_SECONDS,
        "splits": splits,
        "overall": {"songs": sum(s["songs"] for s in splits.values()), "clips": len(all_labels),
                    "class_shares": _shares(all_labels)},
    }
    drawn = {r["track"]: {k: r[k] for k in ("fonts", "effects") if k in r}
             for split in records for r in records[split] if "fonts" in r}
    if drawn:
        # Which font played each stem (instruments in MIDI order) and the effects drawn for it.
        manifest["tracks"] = dict(sorted(drawn.items()))
        counts: dict[str, int] = {}
        for info in drawn.values():
            for name in info["fonts"]:
                counts[name] = counts.get(name, 0) + 1
        manifest["font_stems"] = dict(sorted(counts.items()))
    return manifest


def _log(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def _run_jobs(jobs: list[tuple], workers: int, progress: bool, job=None) -> list[dict]:
    """Run :func:`build_song` on every job, in ``workers`` processes (in this one when 1).

    The bar advances as each song finishes, in whatever order the workers finish them. It appears when
    the first song is done and times the others from there, so the workers' start-up (a new Python
    process each, a few seconds, much longer on a busy machine) is not taken for a song's time: counted,
    it made the first ETA many times too long. ``job``: the function run per job (a module-level one,
    so that tests can time the bar with jobs of their own).
    """
    from tqdm import tqdm

    job = _build_song_job if job is None else job
    results: list[dict] = []
    bar = None

    def finished(record: dict) -> None:
        nonlocal bar
        results.append(record)
        if bar is None:
            bar = tqdm(total=len(jobs), initial=1, unit="song", desc="synth", disable=not progress, file=sys.stderr)
        else:
            bar.update(1)

    try:
        if workers <= 1 or len(jobs) <= 1:
            for item in jobs:
                finished(job(item))
            return results
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        # "spawn": the caller may have started threads (torch), which a fork would copy half-way.
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context)
        try:
            pending = {pool.submit(job, item) for item in jobs}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    finished(future.result())  # re-raises a worker's error here
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return results
    finally:
        if bar is not None:
            bar.close()


# ------------------------------------------------------------------------------------------ API


def _resolve_options(soundfont: Path | None, soundfonts: list[str] | None, font_per: str, effects: bool,
                     absence: bool, stems: bool = False) -> tuple[Path, SynthOptions]:
    """The first (or only) font's path and the options; every font loaded once to fail early."""
    from .fonts import resolve_font

    if font_per not in FONT_PER:
        raise ActivityError(f"--font-per must be one of {', '.join(FONT_PER)}, got {font_per!r}")
    if soundfonts:
        if soundfont is not None:
            raise ActivityError("--soundfont and --soundfonts exclude each other: give every font to --soundfonts")
        resolved = [resolve_font(value) for value in soundfonts]
        paths = [p for _, p in resolved]
        if len(set(paths)) != len(paths):
            raise ActivityError(f"--soundfonts names one file twice: {' '.join(str(v) for v in soundfonts)}")
        names = [n for n, _ in resolved]
    else:
        path = resolve_soundfont(soundfont)
        names, paths = [path.stem], [path]
    for path in paths:
        check_soundfont(path)
    if effects:
        try:
            import pedalboard  # noqa: F401
        except ImportError:
            raise ActivityError("--effects needs pedalboard: .venv/bin/python -m pip install pedalboard==0.9.26") from None
    return paths[0], SynthOptions(tuple(str(p) for p in paths), tuple(names), font_per, effects, absence, stems)


def _check_build_args(size: str, seed: int, overwrite: bool, resume: bool, workers: int | None,
                      splits: tuple[str, ...] | None) -> tuple[int, tuple[str, ...]]:
    """Refuse bad build arguments; the worker count (default: CPU count) and the splits in canonical order."""
    if size not in SIZES:
        raise ActivityError(f"--size must be one of {', '.join(SIZES)}, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ActivityError(f"--seed must be a non-negative integer, got {seed!r}")
    if overwrite and resume:
        raise ActivityError("--resume and --overwrite exclude each other: resume keeps finished songs, overwrite deletes them")
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if workers < 1:
        raise ActivityError(f"--workers must be at least 1, got {workers}")
    splits = SPLITS if splits is None else tuple(splits)
    unknown = [split for split in splits if split not in SPLITS]
    if unknown or not splits or len(set(splits)) != len(splits):
        raise ActivityError(f"--splits takes distinct names among {', '.join(SPLITS)}, got {' '.join(splits) or 'none'}")
    return workers, tuple(split for split in SPLITS if split in splits)


def _prepare_out(out: Path, params: dict, overwrite: bool, resume: bool, progress: bool) -> dict | None:
    """Check ``out`` against the build asked for: the manifest of a complete identical set (nothing to do),
    or None once ``out`` may be built into (cleared for ``overwrite``); raises for any other state."""
    if out.exists() and not out.is_dir():
        raise ActivityError(f"--out {out} is a file, not a folder")
    existing = read_manifest(out) if out.is_dir() else None
    if existing is not None and not overwrite:
        if not _same_params(existing, params):
            raise ActivityError(f"{out} already holds a complete synthetic set built with {_describe(existing)}; "
                                f"this run asks for {_describe(params)}. Pass --overwrite to replace it, or choose another --out")
        if _files_match(out, existing):
            _log(progress, f"{out} is already built ({_describe(existing)}): nothing to do")
            return existing
        if not resume:
            raise ActivityError(f"{out} has a manifest but files are missing; pass --resume to rebuild the missing songs "
                                f"or --overwrite to start over")
    if out.is_dir() and any(out.iterdir()):
        if overwrite:
            _clear(out)
        elif resume:
            try:
                found = json.loads((out / PROGRESS / "params.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise ActivityError(f"--resume: {out} is not empty but holds no interrupted synthetic build "
                                    f"({PROGRESS}/params.json is missing); choose another --out") from None
            if not _same_params(found, params):
                raise ActivityError(f"--resume: {out} holds an interrupted build with {_describe(found)}; this run asks for "
                                    f"{_describe(params)}. Use the same parameters, or --overwrite to start over")
        else:
            raise ActivityError(f"{out} is not empty: pass --resume to continue an interrupted build there, "
                                f"--overwrite to replace it, or choose another --out")
    return None


def build_dataset(out: Path, size: str = "demo", seed: int = 0, soundfont: Path | None = None,
                  overwrite: bool = False, resume: bool = False, workers: int | None = None,
                  progress: bool = True, soundfonts: list[str] | None = None, font_per: str = "stem",
                  effects: bool = False, absence: bool = False, splits: tuple[str, ...] | None = None,
                  stems: bool = False) -> dict:
    """Build (or finish) the synthetic Slakh set of ``size`` in ``out``; returns its manifest.

    A complete set with the same size, seed and options is left as it is. ``resume`` continues an
    interrupted build; ``overwrite`` deletes a previous set first. Without either, a non-empty
    ``out`` is refused. ``workers`` processes render songs (default: CPU count).

    ``soundfonts`` (registered names of :mod:`activity.synth.fonts` or paths; instead of
    ``soundfont``) are drawn per stem or per song (``font_per``); ``effects`` runs the seeded chain of
    :mod:`activity.synth.effects`; ``absence`` uses ``ABSENCE_RATES`` for bass, piano and guitar;
    ``splits`` builds only those splits (their songs are the same as in a build of all three);
    ``stems`` also writes every clip's stems by class for training-time remixing (:mod:`activity.remix`),
    leaving the mixes byte-identical.
    """
    workers, splits = _check_build_args(size, seed, overwrite, resume, workers, splits)
    font, options = _resolve_options(soundfont, soundfonts, font_per, effects, absence, stems)
    params = _params(size, seed, font, options, splits)
    out = Path(out).expanduser()
    done = _prepare_out(out, params, overwrite, resume, progress)
    if done is not None:
        return done

    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # a manifest is only ever there for a finished set
    write_json(out / PROGRESS / "params.json", params)
    stale = _remove_stale_temporaries(out)
    spec = SIZES[size]
    records: dict[str, list[dict]] = {split: [] for split in splits}
    jobs: list[tuple] = []
    for split in splits:
        for track in track_numbers(split, spec.songs[split]):
            record = _finished_record(out, split, track, stems)
            if record is not None:
                records[split].append(record)
            else:
                plain = options.plain and not absence and not stems
                jobs.append((str(out), split, track, seed, size, str(font), None if plain else options))
    total = sum(spec.songs[split] for split in splits)
    if total - len(jobs):
        _log(progress, f"resuming in {out}: {total - len(jobs)} of {total} songs already done"
                       + (f", {stale} unfinished temporary files removed" if stale else ""))
    _log(progress, f"rendering {len(jobs)} songs ({_describe(params)}) into {out} with {min(workers, max(len(jobs), 1))} "
                   f"worker(s); the progress bar appears when the first song is done")
    for record in _run_jobs(jobs, workers, progress):
        records[record["split"]].append(record)

    for split in splits:
        labels = {name: lab for r in records[split] for name, lab in r["clips"].items()}
        write_json(out / "slakh" / f"{split}_labels.json", dict(sorted(labels.items())))
    manifest = _manifest(params, records)
    write_json(out / MANIFEST, manifest)  # last: its presence marks the set complete
    return manifest


def ensure_dataset(root: Path = DEFAULT_DATA_ROOT, size: str = "demo") -> Path:
    """``root`` when it holds a complete synthetic set; otherwise build (or resume) it there first."""
    root = Path(root)
    if is_complete(root, SPLITS):
        return root
    print(f"no complete synthetic set in {root}: building it (size {size}); this happens once", file=sys.stderr)
    build_dataset(root, size=size, resume=True)
    return root
