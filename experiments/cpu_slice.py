"""The next slice of the CPU training recipe: build fresh data, continue training, score, record.

    .venv/bin/python experiments/cpu_slice.py                 # run (or finish) the next slice
    .venv/bin/python experiments/cpu_slice.py --plan          # say what the next slice would do, do nothing
    .venv/bin/python experiments/cpu_slice.py --size tiny --root /tmp/slices --data /tmp/slices-data   # smoke run

A slice is one working session's worth of training on 2 CPU cores, and every slice sees new songs:
1. the validation split (``--val-seed``, TimGM6mb, built once per machine; it picks the best epoch and tunes
   the thresholds, in the in-domain font because in-domain macro-F1 is the ship rule's guard);
2. ``--seeds-per-slice`` training builds with new seeds in the four training fonts, a font per stem,
   ``--effects --absence --stems`` (OPL3_FM, the held-out font, is never one of them), and, unless
   ``--no-mix-back``, one plain TimGM6mb build (the in-domain font mixed back in);
3. ``--epochs`` passes over them, continuing the previous slice's best weights with a fresh schedule:
   conv front end frozen, bf16 autocast where the precision rule says it is fast, half the items
   remixed from their own stems, and soft targets from ``--teacher`` (the shipped fe-f) on half of each
   batch (``train --distill-from``);
4. ``experiments/cross_font.py`` on the course-sized test split in TimGM6mb and in OPL3_FM;
5. a row in ``experiments/cpu_slices.json`` and the table between the ``cpu-slices`` markers of
   ``experiments/RESULTS.md``.

Resuming: every step is idempotent. Builds resume song by song, training resumes from ``ROOT/slice-K/last``
(saved every ``--save-every`` steps), scores are kept in ``ROOT/slice-K/cross_font.json``. So after an
interruption the same command continues where it stopped, losing at most the steps since the last save.
On a new machine the data are rebuilt byte for byte from their seeds, and a slice whose predecessor's
run folder is gone starts from the weights committed in ``--committed`` (copy a finished slice's ``best/``
there with ``--commit``), which record the slice they come from.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "experiments" / "cpu_slices.json"
RESULTS = REPO / "experiments" / "RESULTS.md"
MARK_BEGIN, MARK_END = "<!-- cpu-slices:begin -->", "<!-- cpu-slices:end -->"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--root", type=Path, default=REPO / "runs" / "cpu-slices", help="run folders slice-K/")
    p.add_argument("--data", type=Path, default=REPO / "data" / "cpu-slices", help="where the slices' sets are built")
    p.add_argument("--test-data", type=Path, default=REPO / "data", help="where cross_font.py builds its two test splits")
    p.add_argument("--record", type=Path, default=RECORD, help="JSON list of finished slices")
    p.add_argument("--committed", type=Path, default=REPO / "checkpoints" / "cpu-slice",
                   help="committed weights of the last finished slice, the start on a machine without its run folder")
    p.add_argument("--teacher", type=Path, default=REPO / "checkpoints" / "demo",
                   help="soft targets (train --distill-from) and the first slice's starting weights")
    p.add_argument("--size", choices=("tiny", "demo"), default="demo",
                   help="size of each training build (demo: 200 training songs, about 1050 clips); tiny for a smoke run")
    p.add_argument("--val-size", choices=("tiny", "full"), default=None,
                   help="size of the validation build (default: full, 375 songs; tiny with --size tiny)")
    p.add_argument("--val-seed", type=int, default=1000, help="seed of the validation build, the same every slice")
    p.add_argument("--seeds-per-slice", type=int, default=2, help="new multi-font training builds per slice")
    p.add_argument("--epochs", type=int, default=4, help="passes over the slice's training clips")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr-head", type=float, default=1e-3)
    p.add_argument("--lr-encoder", type=float, default=2e-4)
    p.add_argument("--remix-prob", type=float, default=0.5)
    p.add_argument("--distill-weight", type=float, default=1.0)
    p.add_argument("--distill-share", type=float, default=0.5)
    p.add_argument("--mix-back", action=argparse.BooleanOptionalAction, default=True,
                   help="also train on one plain TimGM6mb build (slices 1-3 did; experiments/protect_ab.py found "
                   "distillation alone keeps in-domain better: --no-mix-back --seeds-per-slice 3 uses those clips for fonts)")
    p.add_argument("--save-every", type=int, default=100, help="steps between resumable saves")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes rendering songs")
    p.add_argument("--levels", nargs="+", choices=("clip", "frame"), default=["clip", "frame"],
                   help="what cross_font.py scores")
    p.add_argument("--plan", action="store_true", help="print the next slice's steps and stop")
    p.add_argument("--commit", action="store_true",
                   help="copy the last finished slice's best/ into --committed (for git) and stop")
    return p


def main(argv: list[str] | None = None) -> int:
    from activity.errors import run_command

    return run_command(run_slice, build_parser().parse_args(argv))


def _py(*args: str | Path) -> list[str]:
    return [sys.executable, *map(str, args)]


def _call(cmd: list[str], log: Path) -> None:
    """Run one step, its output both on the console and appended to the slice's log."""
    from activity.errors import ActivityError

    print("$", " ".join(cmd), flush=True)
    with open(log, "a") as handle:
        handle.write(f"\n$ {' '.join(cmd)}  # {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in proc.stdout:
            sys.stdout.write(line)
            handle.write(line)
        code = proc.wait()
    if code:
        raise ActivityError(f"step failed with exit code {code}: {' '.join(cmd)} (log: {log})")


def _records(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.exists() else []


def cpu_name() -> str:
    """``lscpu``'s model name and the flags that decide the fast paths (bf16, AMX, VNNI)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ("amx_bf16", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2")
    return f"{model} ({', '.join(f for f in wanted if f in flags) or 'no AVX2'}), {os.cpu_count()} cores"


def slice_plan(args: argparse.Namespace, k: int) -> dict:
    """Folders, seeds and flags of slice ``k`` (1-based): the same on every machine."""
    from activity.synth.fonts import TRAINING_FONTS

    seeds = [args.val_seed + (k - 1) * args.seeds_per_slice + i + 1 for i in range(args.seeds_per_slice)]
    plain_seed = args.val_seed + 1000 + k if args.mix_back else None  # other songs than the multi-font builds
    val_size = args.val_size or ("tiny" if args.size == "tiny" else "full")
    return {
        "slice": k,
        "val": args.data / f"val-{val_size}-s{args.val_seed}",
        "val_size": val_size,
        "builds": [args.data / f"train-{args.size}-s{s}" for s in seeds],
        "seeds": seeds,
        "plain": args.data / f"plain-{args.size}-s{plain_seed}" if args.mix_back else None,
        "plain_seed": plain_seed,
        "fonts": list(TRAINING_FONTS),
        "view": args.data / f"view-slice{k}",
        "out": args.root / f"slice-{k}",
    }


def _build_commands(args: argparse.Namespace, plan: dict) -> list[list[str]]:
    common = ["--resume", "--quiet", "--workers", str(args.workers)]
    cmds = [_py("-m", "activity.synth", "--size", plan["val_size"], "--splits", "validation", "--seed", args.val_seed,
                "--out", plan["val"], *common)]
    for seed, folder in zip(plan["seeds"], plan["builds"]):
        cmds.append(_py("-m", "activity.synth", "--size", args.size, "--splits", "train", "--seed", seed,
                        "--soundfonts", *plan["fonts"], "--font-per", "stem", "--effects", "--absence", "--stems",
                        "--out", folder, *common))
    if plan["plain"] is not None:
        cmds.append(_py("-m", "activity.synth", "--size", args.size, "--splits", "train", "--seed", plan["plain_seed"],
                        "--out", plan["plain"], *common))
    return cmds


def make_view(view: Path, train_build: Path, val_build: Path) -> Path:
    """A ``--data`` folder whose train split (with stems) is ``train_build``'s and validation ``val_build``'s,
    made of symbolic links; ``midi/`` links every song of both (their track numbers do not overlap)."""
    from activity.errors import ActivityError

    tmp = view.with_name(view.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "midi").mkdir(parents=True)
    train, val = train_build / "slakh", val_build / "slakh"
    for name, source in (("train", train / "train"), ("train_labels.json", train / "train_labels.json"),
                         ("stems", train / "stems"), ("validation", val / "validation"),
                         ("validation_labels.json", val / "validation_labels.json")):
        (tmp / name).symlink_to(source.resolve())
    for build in (train, val):
        for mid in sorted((build / "midi").glob("*.mid")):
            link = tmp / "midi" / mid.name
            if link.is_symlink():
                raise ActivityError(f"{mid.name} is in both {train} and {val}: the view cannot tell them apart")
            link.symlink_to(mid.resolve())
    shutil.rmtree(view, ignore_errors=True)
    tmp.rename(view)
    return view


def _start_weights(args: argparse.Namespace, k: int) -> Path:
    """Slice ``k``'s starting weights: the previous slice's best (its run folder, else the committed copy)."""
    from activity.errors import ActivityError

    if k == 1:
        return args.teacher
    previous = args.root / f"slice-{k - 1}" / "best"
    if previous.is_dir():
        return previous
    marker = args.committed / "slice.json"
    if marker.is_file() and json.loads(marker.read_text()).get("slice") == k - 1:
        return args.committed
    raise ActivityError(f"slice {k} continues slice {k - 1}, but neither {previous} nor a committed copy of it in "
                        f"{args.committed} exists; run `experiments/cpu_slice.py --commit` where slice {k - 1} ran")


def _train_command(args: argparse.Namespace, plan: dict, init: Path) -> list[str]:
    out = plan["out"]
    if (out / "last").exists():  # an interrupted (or finished) slice: its own saved settings continue it
        return _py("-m", "activity.train", "--out", out, "--resume", "--quiet", "--num-workers", "1")
    return _py("-m", "activity.train", "--data", plan["view"], "--extra-train",
               *[b / "slakh" for b in plan["builds"][1:]],
               *([plan["plain"] / "slakh"] if plan["plain"] is not None else []), "--out", out,
               "--init-from", init, "--freeze-feature-extractor", "--encoder-dropout", "0",
               "--batch-size", args.batch_size, "--epochs", args.epochs, "--lr-head", args.lr_head,
               "--lr-encoder", args.lr_encoder, "--warmup", "0.05", "--frame-loss-weight", "1.0",
               "--remix-prob", args.remix_prob, "--distill-from", args.teacher, "--distill-weight",
               args.distill_weight, "--distill-share", args.distill_share, "--precision", "auto",
               "--num-workers", "1", "--save-every", args.save_every, "--seed", args.val_seed + plan["slice"], "--quiet")


def _score_command(args: argparse.Namespace, plan: dict) -> list[str]:
    size = "tiny" if args.size == "tiny" else "full"
    return _py(REPO / "experiments" / "cross_font.py", "--ckpt", plan["out"] / "best", "--size", size,
               "--data", args.test_data, "--workers", args.workers, "--levels", *args.levels,
               "--json", plan["out"] / "cross_font.json")


def _steps_done(out: Path) -> int:
    import torch

    state = torch.load(out / "last" / "trainer_state.pt", map_location="cpu", weights_only=True)["state"]
    return int(state["step"])


def run_slice(args: argparse.Namespace) -> int:
    from activity.errors import ActivityError

    records = _records(args.record)
    if args.commit:
        return commit_last(args, records)
    k = len(records) + 1
    plan = slice_plan(args, k)
    init = _start_weights(args, k)
    builds = _build_commands(args, plan)
    print(f"slice {k}: start from {init}; seeds {plan['seeds']} ({', '.join(plan['fonts'])}, a font per stem, "
          f"effects, absence, stems)"
          f"{'' if plan['plain'] is None else ' + TimGM6mb seed ' + str(plan['plain_seed'])}; validation {plan['val']}; run {plan['out']}")
    if args.plan:
        for cmd in builds:
            print("$", " ".join(cmd))
        print("$", " ".join(_train_command(args, plan, init)))
        print("$", " ".join(_score_command(args, plan)))
        return 0
    if not args.teacher.is_dir():
        raise ActivityError(f"--teacher {args.teacher} does not exist")
    from activity.fileio import write_json

    plan["out"].mkdir(parents=True, exist_ok=True)
    log = plan["out"] / "slice.log"
    times: dict[str, float] = json.loads((plan["out"] / "times.json").read_text()) if (plan["out"] / "times.json").exists() else {}

    def timed(phase: str, cmds: list[list[str]]) -> None:
        t0 = time.perf_counter()
        for cmd in cmds:
            _call(cmd, log)
        times[phase] = times.get(phase, 0.0) + time.perf_counter() - t0
        write_json(plan["out"] / "times.json", times)

    timed("build_s", builds)
    make_view(plan["view"], plan["builds"][0], plan["val"])
    timed("train_s", [_train_command(args, plan, init)])
    if not (plan["out"] / "cross_font.json").exists():
        timed("score_s", [_score_command(args, plan)])
    scores = json.loads((plan["out"] / "cross_font.json").read_text())["splits"]
    steps = _steps_done(plan["out"])
    seen_before = records[-1]["clips_seen_total"] if records else 0
    row = {
        "slice": k, "date": time.strftime("%Y-%m-%d"), "cpu": cpu_name(), "start": str(init.relative_to(REPO) if init.is_relative_to(REPO) else init),
        "seeds": plan["seeds"], "plain_seed": plan["plain_seed"], "mix_back": args.mix_back, "steps": steps,
        "clips_seen": steps * args.batch_size, "clips_seen_total": seen_before + steps * args.batch_size,
        "wall_s": {name: round(v) for name, v in times.items()},
        "splits": {name: {key: split.get(key) for key in ("macro_f1", "mAP", "frame_macro_f1", "present_macro_f1",
                                                          "frame_present_macro_f1")}
                   for name, split in scores.items()},
    }
    records.append(row)
    write_json(args.record, records)
    if args.record == RECORD:
        write_results_table(records)
    print(f"slice {k} done: {row['clips_seen']} clips in {steps} steps; recorded in {args.record}")
    print(table(records))
    return 0


def commit_last(args: argparse.Namespace, records: list[dict]) -> int:
    """Copy the last finished slice's ``best/`` into ``--committed`` with a ``slice.json`` naming it."""
    from activity.errors import ActivityError
    from activity.fileio import atomic_dir

    if not records:
        raise ActivityError(f"no finished slice in {args.record}; nothing to commit")
    k = records[-1]["slice"]
    best = args.root / f"slice-{k}" / "best"
    if not best.is_dir():
        raise ActivityError(f"{best} does not exist on this machine")
    with atomic_dir(args.committed) as tmp:
        for item in best.iterdir():
            shutil.copy2(item, tmp / item.name)
        (tmp / "slice.json").write_text(json.dumps(records[-1], indent=1) + "\n")
    print(f"copied {best} to {args.committed}: the next slice starts from it on any machine")
    return 0


def table(records: list[dict]) -> str:
    """The slices as a Markdown table: clips seen against in-domain and held-out scores."""
    head = ("| slice | clips seen (total) | wall time build / train / score | CPU | in-domain macro-F1 / mAP / frame macro-F1 "
            "| held-out OPL3_FM macro-F1 / mAP / frame macro-F1 | \"present everywhere\" macro-F1 / frame macro-F1 |")
    rows = [head, "| ---: | ---: | --- | --- | --- | --- | --- |"]
    for r in records:
        # cross_font.json's keys are sorted, so find each split by its role, never by position.
        in_domain, held_out = (next(s for name, s in r["splits"].items() if name.startswith(role))
                               for role in ("in-domain", "held-out"))
        fmt = lambda s: " / ".join("-" if s.get(k) is None else f"{s[k]:.4f}" for k in ("macro_f1", "mAP", "frame_macro_f1"))
        present = in_domain
        wall = r["wall_s"]
        rows.append(f"| {r['slice']} | {r['clips_seen']} ({r['clips_seen_total']}) | "
                    f"{wall.get('build_s', 0) / 60:.0f} / {wall.get('train_s', 0) / 60:.0f} / {wall.get('score_s', 0) / 60:.0f} min | "
                    f"{r['cpu']} | {fmt(in_domain)} | {fmt(held_out)} | "
                    f"{present.get('present_macro_f1') or 0:.4f} / {present.get('frame_present_macro_f1') or 0:.4f} |")
    return "\n".join(rows)


def write_results_table(records: list[dict]) -> None:
    """Replace the text between the cpu-slices markers of RESULTS.md with the table."""
    from activity.fileio import write_text

    text = RESULTS.read_text()
    if MARK_BEGIN not in text:
        return
    before, rest = text.split(MARK_BEGIN, 1)
    after = rest.split(MARK_END, 1)[1]
    write_text(RESULTS, f"{before}{MARK_BEGIN}\n{table(records)}\n{MARK_END}{after}")


if __name__ == "__main__":
    sys.exit(main())
