"""Write the golden outputs of the shipped checkpoint (run again only when checkpoints/demo changes).

    .venv/bin/python tests/golden/make_golden.py

Clips: four 5 s clips of the tiny synthetic set (seed 0; built in a temporary folder), stored as 16-bit
PCM in ``demo_clips.npz`` (``clips`` int16 (4, 120000), ``names``), so the test's input is the file itself
and not the renderer of the day. Outputs: the checkpoint's own float32 forward (eval mode, no fast path)
in ``demo_outputs.npz`` (``clip_probs`` (4, 9), ``frame_probs`` (4, 374, 9), float32) with the sha256 of
``model.safetensors`` they belong to.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np
import torch

from activity.audio import load_clip
from activity.model import ActivityModel
from activity.synth import build_dataset

HERE = Path(__file__).resolve().parent
CHECKPOINT = HERE.parents[1] / "checkpoints" / "demo"
# Between them every class but Voice (the tiny set has none) is on in some clip and off in another.
CLIPS = ("test/Track01951_0.npy", "test/Track01950_1.npy", "validation/Track01501_1.npy", "validation/Track01502_0.npy")


def checkpoint_sha256(folder: Path = CHECKPOINT) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        build_dataset(Path(tmp) / "tiny", size="tiny", seed=0, workers=1, progress=False)
        clips = np.stack([load_clip(Path(tmp) / "tiny" / "slakh" / name)[0] for name in CLIPS])
    pcm = np.round(np.clip(clips, -1.0, 32767 / 32768) * 32768).astype(np.int16)
    np.savez_compressed(HERE / "demo_clips.npz", clips=pcm, names=np.array(CLIPS))
    model = ActivityModel.from_pretrained(CHECKPOINT).eval()
    with torch.inference_mode():
        out = model(torch.from_numpy(pcm.astype(np.float32) / 32768))
    np.savez_compressed(HERE / "demo_outputs.npz", clip_probs=out.clip_probs.numpy(),
                        frame_probs=out.frame_probs.numpy(), checkpoint_sha256=np.array(checkpoint_sha256()))
    print(f"wrote {HERE / 'demo_clips.npz'} and {HERE / 'demo_outputs.npz'}; clip probabilities:")
    print(np.round(out.clip_probs.numpy(), 3))


if __name__ == "__main__":
    main()
