"""Fixtures shared by every test file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# The tests run minute models, whose small sequential ops (the GRU's 374 steps) are slower on two
# threads than on one, and much slower when the machine is busy: one thread, here and in subprocesses.
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic Slakh set, built once per session (a few seconds, one process).

    ``synth_root / "slakh"`` is the course layout ({split}/TrackNNNNN_k.npy, {split}_labels.json,
    midi/), ``synth_root / "test_track"`` the whole test songs (.flac + .mid, Track01950 among them).
    Tests must not modify it: copy it first.
    """
    from activity.synth import build_dataset

    root = tmp_path_factory.mktemp("synth") / "synth-slakh"
    build_dataset(root, size="tiny", seed=0, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model saved as a checkpoint folder (the same weights every time)."""
    from activity.model import ActivityModel

    torch.manual_seed(0)
    model = ActivityModel.from_encoder("tiny", gru_hidden=8, gru_layers=1).eval()
    return model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture()
def song(synth_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Track01950's audio and MIDI copied into a fresh folder: ``(songs/Track01950.flac, .mid)``."""
    folder = tmp_path / "songs"
    folder.mkdir()
    for suffix in (".flac", ".mid"):
        shutil.copy(synth_root / "test_track" / f"Track01950{suffix}", folder)
    return folder / "Track01950.flac", folder / "Track01950.mid"


@pytest.fixture()
def hub_offline(monkeypatch: pytest.MonkeyPatch):
    """Call it to make every Hugging Face hub look-up fail as it does without a network."""
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("no network")

    def apply() -> None:
        monkeypatch.setattr(huggingface_hub, "list_repo_files", offline)
        monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)

    return apply
