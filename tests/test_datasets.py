"""The clip folders: every way a student's folder can be wrong gets one message naming the file."""

import json
from pathlib import Path

import numpy as np
import pytest

from activity.audio import load_clip
from activity.constants import CLIP_SAMPLES, NUM_CLASSES
from activity.datasets import ClipDataset, read_split, warn_length_fixed
from activity.errors import ActivityError


def make_split(root: Path, clips: dict[str, np.ndarray], labels: dict | None = None, split: str = "train") -> Path:
    (root / split).mkdir(parents=True, exist_ok=True)
    for name, array in clips.items():
        np.save(root / split / name, array)
    if labels is None:
        labels = {name: [1, 0, 0, 0, 1, 0, 0, 0, 0] for name in clips}
    (root / f"{split}_labels.json").write_text(json.dumps(labels))
    return root


def clip(n: int = CLIP_SAMPLES) -> np.ndarray:
    return (np.sin(np.arange(n) / 10) * 0.1).astype(np.float32)


def test_reads_a_good_split(tmp_path: Path) -> None:
    make_split(tmp_path, {"Track00002_1.npy": clip(), "Track00002_0.npy": clip()})
    index = read_split(tmp_path, "train")
    assert [f.name for f in index.files] == ["Track00002_0.npy", "Track00002_1.npy"]
    assert index.labels.shape == (2, NUM_CLASSES) and index.labels.dtype == np.uint8
    assert index.tracks == ["Track00002", "Track00002"] and index.segments == [0, 1]
    dataset = ClipDataset(index)
    waveform, labels, frames, has_frames = dataset[0]
    assert waveform.shape == (CLIP_SAMPLES,) and labels.tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 0]
    assert frames.shape == (374, NUM_CLASSES) and not has_frames


@pytest.mark.parametrize("labels_text, message", [
    ("{not json", "is not valid JSON"),
    ("[]", "must map file names"),
    ('{"a.npy": [1, 0]}', "must be a list of 9 values"),
    ('{"a.npy": [1, 0, 0, 0, 2, 0, 0, 0, 0]}', "value 2; only 0 and 1"),
    ('{"a.npy": [1, 0, 0, 0, 0.5, 0, 0, 0, 0]}', "value 0.5"),
    ('{"../a.npy": [1, 0, 0, 0, 0, 0, 0, 0, 0]}', "outside the split folder"),
    ('{"/etc/a.npy": [1, 0, 0, 0, 0, 0, 0, 0, 0]}', "outside the split folder"),
    ('{"a.npy": [1, 0, 0, 0, 0, 0, 0, 0, 0], "b.npy": [0, 0, 0, 0, 0, 0, 0, 0, 0]}', "missing from"),
])
def test_bad_labels(tmp_path: Path, labels_text: str, message: str) -> None:
    make_split(tmp_path, {"a.npy": clip()})
    (tmp_path / "train_labels.json").write_text(labels_text)
    with pytest.raises(ActivityError, match=message) as info:
        read_split(tmp_path, "train")
    assert "train_labels.json" in str(info.value)


def test_unlabelled_file(tmp_path: Path) -> None:
    make_split(tmp_path, {"a.npy": clip(), "b.npy": clip()}, labels={"a.npy": [0] * 9})
    with pytest.raises(ActivityError, match="without a label.*b.npy"):
        read_split(tmp_path, "train")


def test_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(ActivityError, match="data folder .*nothing does not exist"):
        read_split(tmp_path / "nothing", "train")
    make_split(tmp_path, {"a.npy": clip()})
    with pytest.raises(ActivityError, match="split folder .*validation does not exist"):
        read_split(tmp_path, "validation")
    (tmp_path / "validation").mkdir()
    with pytest.raises(ActivityError, match="validation_labels.json does not exist"):
        read_split(tmp_path, "validation")


def test_truncated_and_non_array_files(tmp_path: Path) -> None:
    make_split(tmp_path, {"a.npy": clip()})
    data = (tmp_path / "train" / "a.npy").read_bytes()
    (tmp_path / "train" / "a.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(ActivityError, match="a.npy is not a readable .npy array"):
        read_split(tmp_path, "train")
    (tmp_path / "train" / "a.npy").write_bytes(b"hello, not numpy")
    with pytest.raises(ActivityError, match="a.npy is not a readable"):
        read_split(tmp_path, "train")
    with pytest.raises(ActivityError, match="a.npy is not a readable"):
        load_clip(tmp_path / "train" / "a.npy")


def test_conversions(tmp_path: Path) -> None:
    base = clip()
    make_split(tmp_path, {
        "int16.npy": (base * 32767).astype(np.int16),
        "f64.npy": base.astype(np.float64),
        "stereo_cn.npy": np.stack([base, base]),
        "stereo_nc.npy": np.stack([base, base], axis=1),
        "short.npy": base[:1000],
        "long.npy": np.concatenate([base, base[:50]]),
        "silent.npy": np.zeros(CLIP_SAMPLES, np.float32),
    })
    index = read_split(tmp_path, "train")
    assert index.length_fixed == 2
    with pytest.warns(UserWarning, match="2 of 7 clips"):
        warn_length_fixed(index)
    for path in index.files:
        audio, fixed = load_clip(path)
        assert audio.shape == (CLIP_SAMPLES,) and audio.dtype == np.float32
        assert fixed == (path.stem in ("short", "long"))
        if path.stem not in ("short", "silent"):
            np.testing.assert_allclose(audio, base, atol=1e-4)
    short, _ = load_clip(tmp_path / "train" / "short.npy")
    assert short[1000:].sum() == 0


def test_nan_names_the_file(tmp_path: Path) -> None:
    bad = clip()
    bad[5] = np.nan
    make_split(tmp_path, {"nan.npy": bad})
    with pytest.raises(ActivityError, match="nan.npy: 1 samples are NaN or infinite"):
        load_clip(tmp_path / "train" / "nan.npy")


def test_frame_truth_from_midi(tmp_path: Path) -> None:
    import pretty_midi

    make_split(tmp_path, {"Track00007_1.npy": clip()})
    pm = pretty_midi.PrettyMIDI()
    bass = pretty_midi.Instrument(program=33)
    bass.notes.append(pretty_midi.Note(velocity=100, pitch=40, start=6.0, end=7.0))
    pm.instruments.append(bass)
    (tmp_path / "midi").mkdir()
    pm.write(str(tmp_path / "midi" / "Track00007.mid"))
    _, _, frames, has_frames = ClipDataset(read_split(tmp_path, "train"))[0]
    assert has_frames
    on = frames[:, 4].nonzero().flatten().tolist()
    assert on == list(range(75, 150))  # 6-7 s of the song is 1-2 s of clip 1


def test_concatenated_training_folders_serve_each_folders_clips(tmp_path: Path) -> None:
    from activity.datasets import ConcatClipDataset, training_set

    first = make_split(tmp_path / "a", {"Track00001_0.npy": np.full(CLIP_SAMPLES, 0.1, np.float32),
                                        "Track00001_1.npy": np.full(CLIP_SAMPLES, 0.2, np.float32)})
    # Same track name in the second folder: a second build numbers its songs from 1 too.
    second = make_split(tmp_path / "b", {"Track00001_0.npy": np.full(CLIP_SAMPLES, 0.3, np.float32)},
                        labels={"Track00001_0.npy": [0, 0, 0, 0, 1, 0, 0, 0, 1]})
    data = training_set([read_split(first, "train"), read_split(second, "train")], with_frames=False)
    assert isinstance(data, ConcatClipDataset) and len(data) == 3
    assert [float(data[i][0][0]) for i in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert data[2][1].tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert data.has_frames.shape == (3,)
    with pytest.raises(IndexError):
        data[3]
    single = training_set([read_split(first, "train")], with_frames=False)
    assert isinstance(single, ClipDataset) and len(single) == 2


def test_frame_truth_parsed_in_processes_matches_one_process(tmp_path: Path) -> None:
    import pretty_midi

    from activity.datasets import clip_frame_truth
    from activity.errors import ActivityError

    (tmp_path / "midi").mkdir()
    clips = {}
    for song in range(1, 6):
        pm = pretty_midi.PrettyMIDI()
        inst = pretty_midi.Instrument(program=8 * song)  # a different class per song
        inst.notes.append(pretty_midi.Note(velocity=100, pitch=60, start=0.5 * song, end=0.5 * song + 6.0))
        pm.instruments.append(inst)
        pm.write(str(tmp_path / "midi" / f"Track0000{song}.mid"))
        clips.update({f"Track0000{song}_0.npy": clip(), f"Track0000{song}_1.npy": clip()})
    clips["Track00009_0.npy"] = clip()  # no MIDI: zeros, flagged False
    index = read_split(make_split(tmp_path, clips), "train")
    frames, has = clip_frame_truth(index, workers=1)
    frames_pool, has_pool = clip_frame_truth(index, workers=2)
    assert np.array_equal(frames, frames_pool) and np.array_equal(has, has_pool)
    assert has.tolist() == [True] * 10 + [False]
    assert frames[2].any(axis=0).nonzero()[0].tolist() == [2]  # Track00002 is program 16, Organ
    assert not frames[-1].any()
    (tmp_path / "midi" / "Track00003.mid").write_bytes(b"not a midi file")
    with pytest.raises(ActivityError, match="Track00003.mid"):
        clip_frame_truth(index, workers=2)
