"""``python -m activity.train``: fine-tune MERT + BiGRU + auto-pool on the course's clip folders.

Weak labels drive a binary cross-entropy on the auto-pooled clip probabilities; where the song's MIDI is
known (the synthetic set, or Slakh MIDI copied to ``DATA/midi/``) an optional 75 Hz frame term joins it.
Every epoch is scored on validation (loss, micro/macro F1, mAP), per-class thresholds are tuned there
(never on test) and the best model by validation macro-F1 is kept in ``OUT/best``. ``OUT/last`` holds
the resumable state; SIGINT/SIGTERM finish the current step, save it and exit 130/143.

Data parallel: ``torchrun --nproc_per_node N -m activity.train ...`` (gloo on CPU, nccl on GPU); only
rank 0 writes.
"""

from __future__ import annotations

# A command line: torch, the model and the data are imported inside the functions, after the arguments are
# parsed, so `--help` and a bad flag answer at once (start-up time).

import argparse
import contextlib
import csv
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .constants import DTYPE_CHOICES, DTYPE_HELP

REPO_ROOT = Path(__file__).resolve().parents[1]

# Flags that may change when a run is resumed; every other flag is taken from the saved run.
# --data and --extra-train are taken from the command line when given (the folders may have moved), else
# from the saved run.
RESUME_OVERRIDABLE = ("out", "resume", "device", "num_workers", "stop_after_steps", "quiet")


@dataclass
class TrainConfig:
    """Every setting of one training run, as ``python -m activity.train``'s flags of the same names set them
    (``--lr-head`` is ``lr_head``); saved in ``last/train_args.json`` so ``--resume`` continues with them.

    Learning rates are AdamW's per parameter group; ``batch_size`` is clips per process per micro-batch;
    shares (``warmup``, ``mix_prob``, ``remix_prob``, ``distill_share``) are in [0, 1].
    """

    # data and output
    data: Path | None = None
    extra_train: list[Path] = field(default_factory=list)
    out: Path | None = None
    run_name: str | None = None
    resume: bool = False
    # model
    encoder: str = "compact"
    init_from: Path | None = None
    freeze_encoder: bool = False
    freeze_feature_extractor: bool = False
    gradient_checkpointing: bool = False
    frontend_steps: int = 0
    gru_hidden: int = 256
    gru_layers: int = 2
    gru_dropout: float = 0.1
    encoder_dropout: float | None = None
    mask_time_prob: float = 0.0
    # optimisation
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    lr_head: float = 1e-3
    lr_encoder: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.05
    grad_clip: float = 1.0
    frame_loss_weight: float = 0.0
    mix_prob: float = 0.0
    remix_prob: float = 0.0
    remix_keep: float = 0.6
    distill_from: Path | None = None
    distill_weight: float = 1.0
    distill_share: float = 0.5
    seed: int = 0
    # machine
    device: str = "auto"
    precision: str = "auto"
    num_workers: int = 2
    save_every: int = 200
    stop_after_steps: int | None = None
    quiet: bool = False

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """From a parsed command line or a saved ``train_args.json``: paths from strings; keys of other
        versions ignored, settings they lack at their defaults."""
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in values.items() if k in known})
        for name in ("data", "out", "init_from", "distill_from"):
            value = getattr(config, name)
            setattr(config, name, Path(value) if value is not None else None)
        config.extra_train = [Path(d) for d in config.extra_train or []]
        return config

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m activity.train",
        description="Train the instrument-activity model (MERT encoder -> layer mix -> BiGRU -> 75 Hz "
        "frame activity -> auto-pool clip labels) on DIR/{train,validation}/*.npy + DIR/{split}_labels.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("data and output")
    g.add_argument("--data", type=Path, default=defaults.data,
                   help="folder with train/, validation/ and {split}_labels.json (the course's slakh/ folder); "
                   "default: the synthetic set in data/synth-slakh/slakh, built first if missing")
    g.add_argument("--extra-train", type=Path, nargs="+", default=defaults.extra_train, metavar="DIR",
                   help="more training clips from other folders laid out like --data (DIR/train + DIR/train_labels.json, "
                   "frame truth from DIR/midi), e.g. a second synthetic build; validation stays --data's")
    g.add_argument("--out", type=Path, default=defaults.out,
                   help="run folder receiving best/, last/, history.csv and curves.png (default checkpoints/<run name>)")
    g.add_argument("--run-name", default=defaults.run_name, help="name of the default --out folder (default: run-<date>-<time>)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from last/ (model, optimiser, scheduler, step, RNG) with its saved settings")
    g = p.add_argument_group("model")
    g.add_argument("--encoder", default=defaults.encoder,
                   help="mert-v1-95m, mert-v1-330m (24 kHz, 75 Hz), mert-v0, mert-v0-public, music2vec-v1 (16 kHz, "
                   "50 Hz): released weights (hub ids m-a-p/..., downloaded when online, else the local hub cache); "
                   "any of those + '-random' (the architecture, random init); compact (small, random init); tiny "
                   "(tests); or a folder of MERT's files or of a transformers wav2vec2 / hubert / wavlm / "
                   "data2vec-audio model; or a hub id")
    g.add_argument("--init-from", type=Path, default=defaults.init_from, metavar="CKPT",
                   help="start from the weights of a saved model (a best/ folder, or last/model) with a fresh optimiser "
                   "and schedule; the model's shape then comes from its config.json, not from --encoder/--gru-*")
    g.add_argument("--freeze-encoder", action="store_true", help="train only the head (layer mix, BiGRU, classifier, auto-pool)")
    g.add_argument("--freeze-feature-extractor", action="store_true", help="freeze only the encoder's conv front end")
    g.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for encoder activation memory")
    g.add_argument("--frontend-steps", type=int, default=defaults.frontend_steps,
                   help="before training, fit the randomly initialised conv front end alone to the log-mel spectrogram "
                   "of its frames for this many batches (a warm start for compact from scratch; 0 = off)")
    g.add_argument("--gru-hidden", type=int, default=defaults.gru_hidden, help="BiGRU hidden size per direction")
    g.add_argument("--gru-layers", type=int, default=defaults.gru_layers, help="BiGRU layers")
    g.add_argument("--gru-dropout", type=float, default=defaults.gru_dropout, help="dropout between BiGRU layers")
    g.add_argument("--encoder-dropout", type=float, default=defaults.encoder_dropout, metavar="P",
                   help="dropout rate of the encoder's hidden states, attention and feature projection (default: "
                   "the encoder's own, 0.1 for compact and MERT-v1-95M); also changes a model given by --init-from")
    g.add_argument("--mask-time-prob", type=float, default=defaults.mask_time_prob, help="SpecAugment time masking in the encoder (0 = off)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=defaults.epochs, help="passes over the training split")
    g.add_argument("--max-steps", type=int, default=defaults.max_steps, help="stop after this many optimiser steps in total (sets the schedule length)")
    g.add_argument("--batch-size", type=int, default=defaults.batch_size, help="clips per process per micro-batch")
    g.add_argument("--grad-accum", type=int, default=defaults.grad_accum, help="micro-batches per optimiser step")
    g.add_argument("--lr-head", type=float, default=defaults.lr_head, help="AdamW learning rate of the head")
    g.add_argument("--lr-encoder", type=float, default=defaults.lr_encoder, help="AdamW learning rate of the encoder")
    g.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="AdamW weight decay")
    g.add_argument("--warmup", type=float, default=defaults.warmup, help="share of the steps spent warming the learning rate up from 0")
    g.add_argument("--grad-clip", type=float, default=defaults.grad_clip, help="clip the gradient norm to this (0 = off)")
    g.add_argument("--frame-loss-weight", type=float, default=defaults.frame_loss_weight,
                   help="weight of the 75 Hz frame BCE where MIDI truth exists (DATA/midi/TrackNNNNN.mid); 0 = clip labels only")
    g.add_argument("--mix-prob", type=float, default=defaults.mix_prob,
                   help="probability that a training clip is summed with another clip of the batch (labels united)")
    g.add_argument("--remix-prob", type=float, default=defaults.remix_prob,
                   help="share of training clips remixed from their own stems (a set built with activity.synth --stems): "
                        "random groups dropped and gains drawn, labels and 75 Hz truth following the groups kept")
    g.add_argument("--remix-keep", type=float, default=defaults.remix_keep,
                   help="with --remix-prob: chance each stem group (a class, or the drums) is kept in a remix")
    g.add_argument("--distill-from", type=Path, default=defaults.distill_from, metavar="CKPT",
                   help="a saved model (a best/ folder) whose clip and 75 Hz frame probabilities are soft targets on "
                   "a share of each batch (--distill-share), added to the label loss with --distill-weight: keeps "
                   "what that model knows while new data teaches the rest")
    g.add_argument("--distill-weight", type=float, default=defaults.distill_weight,
                   help="with --distill-from: weight of the soft-target loss (clip BCE + --frame-loss-weight x frame BCE)")
    g.add_argument("--distill-share", type=float, default=defaults.distill_share,
                   help="with --distill-from: share of each micro-batch (its first items, at least one) the teacher "
                   "scores; the teacher's forward pass costs time in proportion")
    g.add_argument("--seed", type=int, default=defaults.seed, help="seed of initialisation, data order, dropout and mixing")
    g = p.add_argument_group("machine")
    g.add_argument("--device", default=defaults.device, help="auto (cuda if available), cpu, cuda or cuda:N")
    g.add_argument("--precision", choices=DTYPE_CHOICES, default=defaults.precision,
                   help="bf16 means bf16 autocast for the forward passes. " + DTYPE_HELP)
    g.add_argument("--num-workers", type=int, default=defaults.num_workers, help="data-loading worker processes")
    g.add_argument("--save-every", type=int, default=defaults.save_every, help="write the resumable state every N optimiser steps (and each epoch)")
    g.add_argument("--stop-after-steps", type=int, default=defaults.stop_after_steps,
                   help="leave (resumably, like an interruption) after this many steps in this invocation; "
                   "train in slices with --resume")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


@dataclass
class TrainState:
    """What ``last/`` holds besides the model: enough to continue exactly where a run stopped."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    best_macro_f1: float = -1.0
    epoch_loss_sum: float = 0.0  # over this epoch's micro-batches so far, so a resumed epoch reports the same mean
    epoch_loss_count: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


class StopRequested:
    """Turns SIGINT/SIGTERM into a flag checked between optimiser steps."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopRequested":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signum is not None:  # a second Ctrl-C means now
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\nsignal {signal.Signals(signum).name}: finishing this step and saving a resumable state ...",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum or 0)


def main(argv: list[str] | None = None) -> int:
    from .errors import run_command

    return run_command(train, TrainConfig.from_dict(vars(build_parser().parse_args(argv))))


def _load_saved_config(config: TrainConfig) -> TrainConfig:
    from .errors import ActivityError

    if config.out is None:
        raise ActivityError("--resume needs --out, the run folder to continue")
    from .fileio import complete_dir

    last = complete_dir(config.out / "last")
    if last is None:
        raise ActivityError(f"--resume: {config.out / 'last'} does not exist; nothing to resume")
    merged = TrainConfig.from_dict(json.loads((last / "train_args.json").read_text()))
    for key in RESUME_OVERRIDABLE:
        setattr(merged, key, getattr(config, key))
    if config.data is not None:
        merged.data = config.data
    if config.extra_train:
        merged.extra_train = config.extra_train
    return merged


def _check_config(config: TrainConfig) -> None:
    from .errors import ActivityError

    positive = {"--epochs": config.epochs, "--batch-size": config.batch_size, "--grad-accum": config.grad_accum,
                "--save-every": config.save_every}
    for flag, value in positive.items():
        if value < 1:
            raise ActivityError(f"{flag} must be at least 1, got {value}")
    for flag, value in {"--max-steps": config.max_steps, "--stop-after-steps": config.stop_after_steps}.items():
        if value is not None and value < 1:
            raise ActivityError(f"{flag} must be at least 1, got {value}")
    if config.encoder_dropout is not None and not 0.0 <= config.encoder_dropout < 1.0:
        raise ActivityError(f"--encoder-dropout must be in [0, 1), got {config.encoder_dropout}")
    for flag, value in {"--warmup": config.warmup, "--mix-prob": config.mix_prob, "--mask-time-prob": config.mask_time_prob,
                        "--gru-dropout": config.gru_dropout, "--remix-prob": config.remix_prob,
                        "--remix-keep": config.remix_keep, "--distill-share": config.distill_share}.items():
        if not 0.0 <= value <= 1.0:
            raise ActivityError(f"{flag} must be in [0, 1], got {value}")
    for flag, value in {"--lr-head": config.lr_head, "--lr-encoder": config.lr_encoder,
                        "--frame-loss-weight": config.frame_loss_weight, "--weight-decay": config.weight_decay,
                        "--grad-clip": config.grad_clip, "--distill-weight": config.distill_weight}.items():
        if value < 0:
            raise ActivityError(f"{flag} must not be negative, got {value}")
    if config.num_workers < 0:
        raise ActivityError(f"--num-workers must not be negative, got {config.num_workers}")
    if config.frontend_steps < 0:
        raise ActivityError(f"--frontend-steps must not be negative, got {config.frontend_steps}")
    if config.frontend_steps and not config.resume:
        from .encoder import encoder_names, random_preset

        # Fitting a pretrained front end to a spectrogram would overwrite what it learned.
        if config.init_from is not None or random_preset(config.encoder) is None:
            source = f"--init-from {config.init_from}" if config.init_from is not None else f"--encoder {config.encoder}"
            randoms = [n for n in encoder_names() if random_preset(n) is not None]
            raise ActivityError(f"--frontend-steps warms up a randomly initialised encoder ({', '.join(randoms)}); "
                                f"{source} brings trained weights")
        if config.freeze_encoder or config.freeze_feature_extractor:
            raise ActivityError("--frontend-steps trains the conv front end; it cannot go with --freeze-encoder or "
                                "--freeze-feature-extractor")


def _check_training_folders(data: Path, extra_train: list[Path]) -> None:
    """Refuse a folder given twice: its clips would be trained on twice per epoch."""
    from .errors import ActivityError

    seen = {data.resolve(): "--data"}
    for extra in extra_train:
        if extra.resolve() in seen:
            raise ActivityError(f"--extra-train {extra} is the same folder as {seen[extra.resolve()]}; "
                                "its clips would be trained on twice per epoch")
        seen[extra.resolve()] = f"--extra-train {extra}"


def _lr_lambda(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int, world: int) -> list[list[int]]:
    """This rank's micro-batches of one epoch: a seeded permutation, sharded, incomplete batch dropped."""
    import torch

    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=gen).tolist()
    per_rank = len(order) // world
    mine = order[rank * per_rank : (rank + 1) * per_rank]
    return [mine[i : i + batch_size] for i in range(0, len(mine) - batch_size + 1, batch_size)]


def _mix_batch(waveform, labels, frames, has_frames, prob: float, seed: int, step: int):
    """Sum a random share of the clips with another clip of the batch; labels and frame truth united."""
    import torch

    if prob <= 0 or waveform.shape[0] < 2:
        return waveform, labels, frames, has_frames
    gen = torch.Generator().manual_seed(seed * 7_919 + step)
    b = waveform.shape[0]
    chosen = torch.rand(b, generator=gen) < prob
    partner = (torch.arange(b) + torch.randint(1, b, (b,), generator=gen)) % b
    gain = 10 ** (torch.empty(b).uniform_(-6, 0, generator=gen) / 20)
    sel = chosen.nonzero().flatten()
    waveform = waveform.clone()
    labels, frames, has_frames = labels.clone(), frames.clone(), has_frames.clone()
    waveform[sel] = waveform[sel] + gain[sel, None] * waveform[partner[sel]]
    labels[sel] = torch.maximum(labels[sel], labels[partner[sel]])
    frames[sel] = torch.maximum(frames[sel], frames[partner[sel]])
    has_frames[sel] = has_frames[sel] & has_frames[partner[sel]]
    return waveform, labels, frames, has_frames


def compute_loss(out, labels, frames, has_frames, frame_loss_weight: float):
    """Clip BCE on the auto-pooled probabilities, plus the weighted frame BCE on clips with truth."""
    import torch
    import torch.nn.functional as F

    from .constants import PROB_EPS

    clip_probs = out.clip_probs.float().clamp(PROB_EPS, 1 - PROB_EPS)
    loss = F.binary_cross_entropy(clip_probs, labels)
    if frame_loss_weight > 0 and bool(has_frames.any()):
        logits = out.frame_logits.float()[has_frames]
        target = frames[has_frames][:, : logits.shape[1]]
        loss = loss + frame_loss_weight * F.binary_cross_entropy_with_logits(logits, target)
    return loss


def distillation_loss(out, teacher_out, frame_loss_weight: float):
    """Soft-target BCE of the first ``k`` items of ``out`` against ``teacher_out`` (``k`` = the teacher's batch):
    clip probabilities (k, 9) and, weighted by ``frame_loss_weight``, 75 Hz frame probabilities (k, T, 9)."""
    import torch.nn.functional as F

    from .constants import PROB_EPS

    k = teacher_out.clip_probs.shape[0]
    clip_probs = out.clip_probs[:k].float().clamp(PROB_EPS, 1 - PROB_EPS)
    loss = F.binary_cross_entropy(clip_probs, teacher_out.clip_probs.float())
    if frame_loss_weight > 0:
        loss = loss + frame_loss_weight * F.binary_cross_entropy_with_logits(
            out.frame_logits[:k].float(), teacher_out.frame_probs.float())
    return loss


def _load_teacher(config: TrainConfig, device, log):
    """``--distill-from``: the frozen teacher model in eval mode on ``device``, or None."""
    from .errors import ActivityError
    from .model import ActivityModel

    if config.distill_from is None:
        return None
    try:
        teacher = ActivityModel.from_pretrained(config.distill_from)
    except ActivityError as exc:
        raise ActivityError(f"--distill-from: {exc}") from None
    teacher.to(device).eval().requires_grad_(False)
    log(f"distilling from {config.distill_from}: soft targets on {config.distill_share:.0%} of each batch, "
        f"weight {config.distill_weight:g}")
    return teacher


def _write_history(out: Path, history: list[dict[str, float]]) -> None:
    from .fileio import atomic_path
    from .plotting import plot_training_curves

    if not history:
        return
    with atomic_path(out / "history.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    plot_training_curves(history, out / "curves.png")


def _save_last(run: "Run") -> None:
    import torch

    from .fileio import atomic_dir, atomic_path

    with atomic_dir(run.config.out / "last") as tmp:
        run.model.save_pretrained(tmp / "model")
        payload = {
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "state": {k: v for k, v in vars(run.state).items()},
            "torch_rng": torch.get_rng_state(),
        }
        if run.device.type == "cuda":
            payload["cuda_rng"] = torch.cuda.get_rng_state(run.device)
        with atomic_path(tmp / "trainer_state.pt") as path:
            torch.save(payload, path)
        (tmp / "train_args.json").write_text(run.config.to_json())


@dataclass
class Run:
    """What the steps of one training run share: set up by :func:`_set_up`, advanced by the others."""

    config: TrainConfig
    device: Any  # torch.device
    dtype: Any  # torch.dtype of the forward passes (bf16 autocast or float32)
    rank: int
    world: int
    train_set: Any
    val_index: Any
    model: Any  # ActivityModel
    net: Any  # the model, or its DistributedDataParallel wrapper
    optimizer: Any
    scheduler: Any
    steps_per_epoch: int
    total_steps: int
    state: TrainState
    teacher: Any = None  # the --distill-from model, or None
    steps_this_run: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def log(self, *parts: Any, **kwargs: Any) -> None:
        if self.is_main:
            print(*parts, **kwargs)


def _start_processes(config: TrainConfig):
    """The device, rank and world size; joins the process group under torchrun."""
    import torch
    import torch.distributed as dist

    from .predict import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = resolve_device(config.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device, rank, world


def _read_data(config: TrainConfig, log, is_main: bool):
    """Training set (``--data`` and ``--extra-train``) and the validation split's index; fills in default paths."""
    from .datasets import read_split, training_set, warn_length_fixed
    from .errors import ActivityError

    if config.data is None:
        from .synth import DEFAULT_DATA_ROOT, ensure_dataset

        config.data = ensure_dataset(DEFAULT_DATA_ROOT) / "slakh"
    if config.out is None:
        config.out = REPO_ROOT / "checkpoints" / (config.run_name or time.strftime("run-%Y%m%d-%H%M%S"))
    _check_training_folders(config.data, config.extra_train)
    train_indexes = [read_split(config.data, "train")]
    for extra in config.extra_train:
        try:
            train_indexes.append(read_split(extra, "train"))
        except ActivityError as exc:
            raise ActivityError(f"--extra-train: {exc}") from None
    val_index = read_split(config.data, "validation")
    for index in (*train_indexes, val_index):
        songs = len({t for t in index.tracks})
        log(f"found {len(index)} {index.split} clips from {songs} songs in {index.root / index.split}")
        if is_main:
            warn_length_fixed(index)
    remix = None
    if config.remix_prob > 0:
        from .remix import RemixOptions

        remix = RemixOptions(prob=config.remix_prob, keep=config.remix_keep)
    train_set = training_set(train_indexes, with_frames=config.frame_loss_weight > 0, remix=remix, seed=config.seed)
    if remix is not None:
        log(f"remixing {config.remix_prob:.0%} of the items of the {train_set.with_stems} of {len(train_set)} training "
            f"clips that have stems (each group kept with chance {config.remix_keep:g})")
    if config.frame_loss_weight > 0:
        log(f"frame truth (75 Hz, from each folder's midi/) for {int(train_set.has_frames.sum())} of {len(train_set)} training clips")
    return train_set, val_index


def _build_or_restore_model(config: TrainConfig, log):
    """The model to train: from ``last/`` (resume), ``--init-from`` or ``--encoder``, with the freezing flags."""
    from .errors import ActivityError
    from .model import ActivityModel

    if config.resume:
        from .fileio import complete_dir

        model = ActivityModel.from_pretrained(complete_dir(config.out / "last") / "model")
    elif (config.out / "last").exists() or (config.out / "best").exists():
        raise ActivityError(f"--out {config.out} already holds a run; pass --resume to continue it or choose another --out")
    elif config.init_from is not None:
        try:
            model = ActivityModel.from_pretrained(config.init_from)
        except ActivityError as exc:
            raise ActivityError(f"--init-from: {exc}") from None
        # Thresholds were tuned for the old weights; best/ gets newly tuned ones.
        model.thresholds = None
        log(f"starting from the weights in {config.init_from} (encoder and head shape from its config.json)")
    else:
        model = ActivityModel.from_encoder(
            config.encoder, gru_hidden=config.gru_hidden, gru_layers=config.gru_layers, gru_dropout=config.gru_dropout,
            mask_time_prob=config.mask_time_prob,
        )
    if config.encoder_dropout is not None:
        model = model.with_encoder_dropout(config.encoder_dropout)
    if config.freeze_encoder:
        model.freeze_encoder()
    elif config.freeze_feature_extractor:
        model.freeze_feature_extractor()
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model


def _fit_frontend(model, train_set, config: TrainConfig, device, dtype, log) -> None:
    """``--frontend-steps``: fit the random conv front end to the log-mel spectrogram first."""
    import numpy as np

    from .frontend import fit_frontend
    from .precision import autocast

    started = time.perf_counter()
    losses = fit_frontend(model.encoder, train_set, config.frontend_steps, config.batch_size, seed=config.seed,
                          precision_context=lambda: autocast(device, dtype), prepare=model.encoder_input)
    tenth = max(1, len(losses) // 10)
    log(f"front end fitted to the log-mel spectrogram in {time.perf_counter() - started:.0f} s: "
        f"error {np.mean(losses[:tenth]):.3f} (first tenth of {len(losses)} steps) -> {np.mean(losses[-tenth:]):.3f} (last)")


def _optimiser(model, config: TrainConfig, n_train: int, rank: int, world: int):
    """AdamW with the head and encoder groups, the warm-up + cosine schedule, steps per epoch and in all."""
    import torch

    from .errors import ActivityError

    groups = [
        {"params": [p for p in model.head_parameters() if p.requires_grad], "lr": config.lr_head},
        {"params": [p for p in model.encoder_parameters() if p.requires_grad], "lr": config.lr_encoder},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=config.weight_decay)
    batches_per_epoch = len(_epoch_batches(n_train, config.batch_size, config.seed, 0, rank, world))
    steps_per_epoch = batches_per_epoch // config.grad_accum
    if steps_per_epoch == 0:
        raise ActivityError(
            f"{n_train} training clips make no optimiser step of --batch-size {config.batch_size} x "
            f"--grad-accum {config.grad_accum} x {world} processes; lower them")
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total_steps, int(config.warmup * total_steps)))
    return optimizer, scheduler, steps_per_epoch, total_steps


def _restore_state(run: Run) -> None:
    """``--resume``: optimiser, schedule, counters and random state from ``last/trainer_state.pt``."""
    import torch

    from .fileio import complete_dir

    last = complete_dir(run.config.out / "last")
    payload = torch.load(last / "trainer_state.pt", map_location="cpu", weights_only=True)
    run.optimizer.load_state_dict(payload["optimizer"])
    run.scheduler.load_state_dict(payload["scheduler"])
    run.state = TrainState(**payload["state"])
    torch.set_rng_state(payload["torch_rng"])
    if run.device.type == "cuda" and "cuda_rng" in payload:
        torch.cuda.set_rng_state(payload["cuda_rng"], run.device)
    state = run.state
    run.log(f"resuming {run.config.out} at step {state.step} (epoch {state.epoch + 1}, step {state.step_in_epoch} of "
            f"{run.steps_per_epoch})")


def _set_up(config: TrainConfig) -> Run:
    """Build or restore everything a run needs, in the order that keeps resumed runs identical."""
    import torch

    from .precision import checked_autocast_dtype, resolve_dtype

    device, rank, world = _start_processes(config)
    log = print if rank == 0 else (lambda *a, **k: None)
    train_set, val_index = _read_data(config, log, rank == 0)
    torch.manual_seed(config.seed)
    model = _build_or_restore_model(config, log)
    model.to(device).train()
    dtype = checked_autocast_dtype(model, device, resolve_dtype(config.precision, device))
    log(f"precision: {'bf16 autocast' if dtype == torch.bfloat16 else 'float32'} (--precision {config.precision})")
    teacher = _load_teacher(config, device, log)
    fitted_frontend = bool(config.frontend_steps) and not config.resume
    if fitted_frontend:
        _fit_frontend(model, train_set, config, device, dtype, log)
    optimizer, scheduler, steps_per_epoch, total_steps = _optimiser(model, config, len(train_set), rank, world)
    run = Run(config=config, device=device, dtype=dtype, rank=rank, world=world, train_set=train_set, val_index=val_index, model=model, net=model, optimizer=optimizer, scheduler=scheduler,
              steps_per_epoch=steps_per_epoch, total_steps=total_steps, state=TrainState(), teacher=teacher)
    if config.resume:
        _restore_state(run)
    if world > 1:
        run.net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=config.freeze_encoder or config.freeze_feature_extractor)
    if run.is_main:
        config.out.mkdir(parents=True, exist_ok=True)
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        source = f"weights from {config.init_from}" if config.init_from is not None and not config.resume else f"encoder {config.encoder}"
        log(f"model: {source} ({model.encoder.describe()}), {n_train / 1e6:.2f}M trainable parameters; {total_steps} steps "
            f"({steps_per_epoch} per epoch) of {config.batch_size * config.grad_accum * world} clips on {device}")
        if fitted_frontend:  # a resumed run must not fit the front end again
            _save_last(run)
    return run


def _epoch_loader(run: Run):
    """This rank's remaining micro-batches of the current epoch."""
    import torch

    config, state = run.config, run.state
    batches = _epoch_batches(len(run.train_set), config.batch_size, config.seed, state.epoch, run.rank, run.world)
    batches = batches[: run.steps_per_epoch * config.grad_accum]
    run.train_set.set_epoch(state.epoch)  # before the workers copy the dataset
    return torch.utils.data.DataLoader(
        run.train_set, batch_sampler=batches[state.step_in_epoch * config.grad_accum :],
        num_workers=config.num_workers, persistent_workers=False,
        # Its own generator: creating the iterator must not draw from the global RNG, or a
        # resumed run would see different dropout masks than an uninterrupted one.
        generator=torch.Generator().manual_seed(config.seed * 100_003 + state.epoch))


def _train_epoch(run: Run, stop: StopRequested) -> int | None:
    """Optimiser steps until the epoch (or the run) ends; an exit code if the run must leave now, else None."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from .precision import autocast

    config, state = run.config, run.state
    bar = tqdm(total=run.steps_per_epoch, initial=state.step_in_epoch, desc=f"epoch {state.epoch + 1}",
               disable=config.quiet or not run.is_main, unit="step", dynamic_ncols=True)
    recent: list[float] = []
    t0, clips, micro = time.perf_counter(), 0, 0
    for batch in _epoch_loader(run):
        waveform, labels, frames, has_frames = _mix_batch(
            *batch, config.mix_prob, config.seed + run.rank * 1_000_003, state.step * config.grad_accum + micro)
        waveform, labels, frames, has_frames = (t.to(run.device) for t in (waveform, labels, frames, has_frames))
        sync = micro == config.grad_accum - 1 or run.world == 1
        # Between accumulation steps DDP need not all-reduce gradients.
        with run.net.no_sync() if (run.world > 1 and not sync) else contextlib.nullcontext():
            with autocast(run.device, run.dtype):
                out = run.net(waveform)
            loss = compute_loss(out, labels, frames, has_frames, config.frame_loss_weight)
            if run.teacher is not None:
                k = max(1, round(config.distill_share * waveform.shape[0]))
                with torch.no_grad(), autocast(run.device, run.dtype):
                    teacher_out = run.teacher(waveform[:k])
                loss = loss + config.distill_weight * distillation_loss(out, teacher_out, config.frame_loss_weight)
            loss = loss / config.grad_accum
            loss.backward()
        recent = (recent + [loss.item() * config.grad_accum])[-20:]
        state.epoch_loss_sum += recent[-1]
        state.epoch_loss_count += 1
        clips += waveform.shape[0] * run.world
        micro += 1
        if micro < config.grad_accum:
            continue
        micro = 0
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip)
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.step_in_epoch += 1
        run.steps_this_run += 1
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(recent):.4f}", clips_per_s=f"{clips / (time.perf_counter() - t0):.1f}")
        interrupted = stop.signum is not None or (
            config.stop_after_steps is not None and run.steps_this_run >= config.stop_after_steps)
        if run.is_main and (interrupted or state.step % config.save_every == 0):
            _save_last(run)
        if interrupted:
            bar.close()
            run.log(f"saved a resumable state at step {state.step} in {config.out / 'last'}; "
                    f"continue with: python -m activity.train --out {config.out} --resume")
            return stop.exit_code if stop.signum is not None else 0
        if state.step >= run.total_steps:
            break
    bar.close()
    return None


def _validate_and_keep_best(run: Run) -> None:
    """Score validation, tune thresholds there, keep the best model in ``best/``, write history and curves."""
    import numpy as np

    from .api import Detector
    from .constants import PROB_EPS
    from .evaluate import clip_loss, clip_scores, tune_thresholds

    config, state, model = run.config, run.state, run.model
    # No float32 re-check: the thresholds are tuned on these probabilities, not applied to them.
    detector = Detector(model, device=run.device, dtype=run.dtype, batch_size=config.batch_size, recheck=False)
    probs = np.clip(detector.split_probs(run.val_index), PROB_EPS, 1 - PROB_EPS)
    truth = run.val_index.labels
    thresholds = tune_thresholds(truth, probs)
    at_half = clip_scores(truth, probs, 0.5)
    tuned = clip_scores(truth, probs, thresholds)
    row = {
        "epoch": state.epoch + 1, "step": state.step,
        "train_loss": state.epoch_loss_sum / max(1, state.epoch_loss_count),
        "val_loss": clip_loss(truth, probs), "val_micro_f1": tuned["micro_f1"], "val_macro_f1": tuned["macro_f1"],
        "val_macro_f1_at_0.5": at_half["macro_f1"], "val_mAP": tuned["mAP"],
        "lr_head": run.optimizer.param_groups[0]["lr"],
    }
    state.history.append(row)
    run.log(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f}, val loss {row['val_loss']:.4f}, "
            f"val macro-F1 {row['val_macro_f1']:.3f} (at 0.5: {row['val_macro_f1_at_0.5']:.3f}), "
            f"micro-F1 {row['val_micro_f1']:.3f}, mAP {row['val_mAP']:.3f}")
    if tuned["macro_f1"] > state.best_macro_f1:
        state.best_macro_f1 = tuned["macro_f1"]
        model.thresholds = thresholds.tolist()
        model.save_pretrained(config.out / "best")
        model.thresholds = None
        run.log(f"new best validation macro-F1 {tuned['macro_f1']:.3f}: saved {config.out / 'best'}")
    _write_history(config.out, state.history)


def train(config: TrainConfig) -> int:
    """Run (or resume) one training run as configured by ``config``; return the exit code."""
    if config.resume:
        config = _load_saved_config(config)
    _check_config(config)
    run = _set_up(config)
    state = run.state
    with StopRequested() as stop:
        while state.step < run.total_steps:
            code = _train_epoch(run, stop)
            if code is not None:
                _finish(run.world)
                return code
            # End of an epoch (or of the run): score validation, tune thresholds, keep the best.
            if run.is_main:
                _validate_and_keep_best(run)
            state.epoch += 1
            state.step_in_epoch = 0
            state.epoch_loss_sum, state.epoch_loss_count = 0.0, 0
            if run.is_main:
                _save_last(run)
            if run.world > 1:
                import torch.distributed as dist

                dist.barrier()
    run.log(f"done: {state.step} steps; best validation macro-F1 {state.best_macro_f1:.3f} in {config.out / 'best'}")
    _finish(run.world)
    return 0


def _finish(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
