"""Stems kept by ``activity.synth --stems`` and training-time remixing (issue 19, item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from activity import train as train_cli
from activity.constants import CLIP_SAMPLES, NUM_CLASSES
from activity.datasets import ClipDataset, read_split, training_set
from activity.errors import ActivityError
from activity.midi import load_midi
from activity.remix import OTHER_GROUP, RemixOptions, group_of, read_clip_stems, remix_clip, stems_path
from activity.synth import build_dataset


@pytest.fixture(scope="module")
def stems_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's tiny set (seed 0) built again with --stems."""
    root = tmp_path_factory.mktemp("stems") / "set"
    build_dataset(root, size="tiny", seed=0, workers=1, progress=False, stems=True)
    return root


def test_stems_sum_to_the_clip_and_leave_the_mixes_unchanged(stems_root: Path, synth_root: Path) -> None:
    manifest = json.loads((stems_root / "manifest.json").read_text())
    assert manifest["stems"]["dtype"] == "float16"
    checked = 0
    for split in ("train", "validation", "test"):
        assert (stems_root / "slakh" / f"{split}_labels.json").read_text() == \
            (synth_root / "slakh" / f"{split}_labels.json").read_text()
        for clip in sorted((synth_root / "slakh" / split).glob("*.npy")):
            mix = np.load(stems_root / "slakh" / split / clip.name)
            assert mix.tobytes() == np.load(clip).tobytes()
            if split != "train":  # only training clips are remixed
                assert not stems_path(stems_root / "slakh", split, clip.name).exists()
                continue
            audio, groups = read_clip_stems(stems_path(stems_root / "slakh", split, clip.name))
            assert audio.shape == (groups.shape[0], CLIP_SAMPLES)
            song = load_midi(stems_root / "slakh" / "midi" / f"{clip.name.split('_')[0]}.mid")
            assert set(groups.tolist()) <= {group_of(int(i.program), bool(i.is_drum)) for i in song.instruments}
            assert list(groups) == sorted(set(groups.tolist()))  # one row per group
            # float16 rows: about 3 decimal digits of the clip's peak
            assert np.abs(audio.sum(axis=0) - mix).max() <= 2e-3 * np.abs(mix).max()
            checked += 1
    assert checked == sum(1 for _ in (synth_root / "slakh" / "train").glob("*.npy"))


def test_effects_build_with_stems_keeps_its_mixes(tmp_path: Path) -> None:
    for name, stems in (("plain", False), ("stems", True)):
        build_dataset(tmp_path / name, size="tiny", seed=1, workers=1, progress=False, effects=True,
                      splits=("train",), stems=stems)
    for clip in sorted((tmp_path / "plain" / "slakh" / "train").glob("*.npy")):
        mix = np.load(clip)
        assert np.load(tmp_path / "stems" / "slakh" / "train" / clip.name).tobytes() == mix.tobytes()
        audio, _ = read_clip_stems(stems_path(tmp_path / "stems" / "slakh", "train", clip.name))
        summed = audio.sum(axis=0)
        # The rows are the mix before the bus (compression, gain, noise): the same music, another level.
        assert np.corrcoef(summed, mix)[0, 1] > 0.95


def test_stems_build_is_byte_identical_with_one_or_two_workers(stems_root: Path, tmp_path: Path) -> None:
    build_dataset(tmp_path / "again", size="tiny", seed=0, workers=2, progress=False, stems=True)
    paths = sorted((stems_root / "slakh" / "stems").rglob("*.npz"))
    assert len(paths) == len(list((stems_root / "slakh" / "train").glob("*.npy")))
    for path in paths:
        again = tmp_path / "again" / path.relative_to(stems_root)
        assert again.read_bytes() == path.read_bytes(), path.name


def _rows() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    groups = np.array([0, 3, 4, OTHER_GROUP])
    audio = rng.standard_normal((4, 1000)).astype(np.float32) * 0.1
    labels = np.zeros(NUM_CLASSES, dtype=np.uint8)
    labels[[0, 3, 4, 6]] = 1  # Voice is labelled but has no row (a silent row is not written)
    frames = np.ones((20, NUM_CLASSES), dtype=np.uint8)
    return audio, groups, labels, frames


def test_remix_drops_labels_and_frames_of_the_groups_it_drops() -> None:
    audio, groups, labels, frames = _rows()
    seen_dropped = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        kept = np.random.default_rng(seed).random(4) < 0.5
        waveform, new_labels, new_frames = remix_clip(audio, groups, labels, frames, 0.8, rng, RemixOptions(keep=0.5))
        assert np.isclose(np.abs(waveform).max(), 0.8)
        for g, k in zip(groups, kept):
            if g < NUM_CLASSES and not k and (kept & np.isin(groups, [0, 3, 4])).any():
                assert new_labels[g] == 0 and not new_frames[:, g].any()
                seen_dropped.add(int(g))
        assert new_labels[6] == 1 and new_frames[:, 6].all()  # no row: nothing to drop
        assert (new_labels <= labels).all() and new_labels[[0, 3, 4]].any()
    assert seen_dropped == {0, 3, 4}


def test_remix_waveform_is_the_kept_rows_at_their_gains() -> None:
    audio, groups, labels, frames = _rows()
    waveform, new_labels, _ = remix_clip(audio, groups, labels, frames, 0.5, np.random.default_rng(1),
                                         RemixOptions(keep=1.0, gain_db=(0.0, 0.0)))
    summed = audio.sum(axis=0)
    assert np.allclose(waveform, summed * 0.5 / np.abs(summed).max(), atol=1e-6)
    assert (new_labels == labels).all()
    # keep 0: exactly one labelled group survives, the drums go
    waveform, new_labels, _ = remix_clip(audio, groups, labels, frames, 0.5, np.random.default_rng(2),
                                         RemixOptions(keep=0.0, gain_db=(0.0, 0.0)))
    assert new_labels[[0, 3, 4]].sum() == 1
    survivor = [g for g in (0, 3, 4) if new_labels[g]][0]
    row = audio[list(groups).index(survivor)]
    assert np.allclose(waveform, row * 0.5 / np.abs(row).max(), atol=1e-6)
    no_labels = np.zeros(NUM_CLASSES, dtype=np.uint8)
    assert remix_clip(audio, groups, no_labels, frames, 0.5, np.random.default_rng(0), RemixOptions()) is None


def test_remix_options_are_checked() -> None:
    with pytest.raises(ActivityError, match="keep must be in"):
        RemixOptions(keep=1.5)
    with pytest.raises(ActivityError, match="is empty"):
        RemixOptions(gain_db=(3.0, -3.0))


def test_dataset_remixes_per_seed_epoch_and_item(stems_root: Path) -> None:
    index = read_split(stems_root / "slakh", "train")
    plain = ClipDataset(index)
    never = ClipDataset(index, remix=RemixOptions(prob=0.0))
    always = ClipDataset(index, remix=RemixOptions(prob=1.0, keep=0.4), seed=5)
    again = ClipDataset(index, remix=RemixOptions(prob=1.0, keep=0.4), seed=5)
    assert always.with_stems == len(index)
    changed_labels = 0
    for i in range(len(index)):
        base = plain[i]
        assert all(np.array_equal(a, b) for a, b in zip(never[i][:3], base[:3]))
        first = always[i]
        assert all(np.array_equal(a, b) for a, b in zip(first[:3], again[i][:3]))
        assert (first[1] <= base[1]).all() and (first[2] <= base[2]).all()
        changed_labels += int((first[1] != base[1]).any())
    assert changed_labels > 0
    always.set_epoch(1)
    assert any(not np.array_equal(always[i][0], again[i][0]) for i in range(len(index)))


def test_remixing_a_set_without_stems_names_the_fix(synth_root: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(ActivityError, match=r"--remix-prob needs the clips' stems.*activity.synth --stems"):
        training_set([read_split(synth_root / "slakh", "train")], remix=RemixOptions())
    code = train_cli.main(["--data", str(synth_root / "slakh"), "--out", str(tmp_path / "run"), "--encoder", "tiny",
                           "--remix-prob", "0.5", "--num-workers", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--remix-prob needs the clips' stems" in err and "Traceback" not in err
    assert train_cli.main(["--data", str(synth_root / "slakh"), "--remix-keep", "2", "--quiet"]) == 2
    assert "--remix-keep must be in [0, 1]" in capsys.readouterr().err


def test_training_with_remixing_runs_and_resumes_identically(stems_root: Path, tmp_path: Path) -> None:
    common = ["--data", str(stems_root / "slakh"), "--encoder", "tiny", "--batch-size", "2", "--epochs", "2",
              "--remix-prob", "0.7", "--frame-loss-weight", "1", "--num-workers", "0", "--quiet", "--seed", "3"]
    assert train_cli.main(common + ["--out", str(tmp_path / "whole")]) == 0
    assert train_cli.main(common + ["--out", str(tmp_path / "sliced"), "--stop-after-steps", "7"]) == 0
    assert train_cli.main(["--out", str(tmp_path / "sliced"), "--resume", "--quiet"]) == 0
    whole = (tmp_path / "whole" / "history.csv").read_text()
    assert whole == (tmp_path / "sliced" / "history.csv").read_text()
