"""``python -m activity.numerics``: do this machine's fast paths agree with float32, under each oneDNN ISA?

oneDNN picks its kernels by the CPU's instruction sets, and ``ONEDNN_MAX_CPU_ISA`` caps them, so one
CPU can run the kernels of older ones. For every cap this CPU offers (:func:`available_isas`) a fresh
process (:func:`report_under_isa`) compares with float32:

* a checkpoint's clip and frame probabilities on fixed clips: the unguarded bf16 fast copy of
  :mod:`activity.cpu_kernels`, the model's own forward under bf16 autocast (training and validation's
  path), and what ``--dtype auto`` gives after the guard;
* for encoder presets with random weights: the relative error of every hidden state of the bf16 fast
  copy's encoder and of the encoder under autocast.

The tests run it for the shipped checkpoint and the small presets (tests/test_golden.py); with
``--golden tests/golden --presets tiny compact mert-v1-95m-random mert-v1-330m-random`` it prints the table
in experiments/RESULTS.md ("One answer on every CPU").
"""

from __future__ import annotations

# A command line: torch, the model and the data are imported inside the functions, after the arguments are
# parsed, so `--help` and a bad flag answer at once (start-up time).

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ISA_FLAGS: dict[str, tuple[str, ...]] = {
    "AVX2": ("avx2", "fma"),
    "AVX512_CORE": ("avx512f", "avx512bw", "avx512vl", "avx512dq"),
    "AVX512_CORE_BF16": ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16"),
    "AVX512_CORE_AMX": ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16", "amx_bf16", "amx_tile"),
}
"""``ONEDNN_MAX_CPU_ISA`` values whose kernels differ for this model, and the ``/proc/cpuinfo`` flags each needs."""


def cpu_flags() -> set[str]:
    """The flags of the first processor in ``/proc/cpuinfo`` (empty where there is none, e.g. not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    match = re.search(r"^flags\s*:(.*)$", text, flags=re.MULTILINE)
    return set(match.group(1).split()) if match else set()


def available_isas(flags: set[str] | None = None) -> list[str]:
    """The ``ONEDNN_MAX_CPU_ISA`` caps this CPU can run, oldest first."""
    flags = cpu_flags() if flags is None else flags
    return [isa for isa, needed in ISA_FLAGS.items() if all(flag in flags for flag in needed)]


def onednn_isa() -> str:
    """The ISA oneDNN reports under this process's environment (its ``ONEDNN_MAX_CPU_ISA`` included).

    Read in a child process with verbose output on: oneDNN prints it once, from C, when it makes its first
    primitive (here a reorder of a small tensor, which every ISA runs through oneDNN).
    """
    code = "import torch; torch.randn(4, 4).to_mkldnn()"
    env = dict(os.environ, ONEDNN_VERBOSE="1")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    match = re.search(r"onednn_verbose,(?:v\d+,)?info,cpu,isa:([^\n]*)", done.stdout + done.stderr)
    return match.group(1).strip() if match else "unknown (oneDNN printed no ISA)"


def _clips_and_reference(checkpoint: Path, golden: Path | None):
    import numpy as np
    import torch

    from .model import ActivityModel
    from .precision import probe_clips

    model = ActivityModel.from_pretrained(checkpoint).eval()
    if golden is not None:
        clips = torch.from_numpy(np.load(golden / "demo_clips.npz")["clips"].astype(np.float32) / 32768)
    else:
        clips = probe_clips()
    with torch.inference_mode():
        reference = model(clips)
    return model, clips, reference


def checkpoint_deviations(checkpoint: Path, golden: Path | None = None) -> dict[str, float]:
    """Largest |difference| of clip and frame probabilities from the model's own float32 forward.

    Keys: ``fast_fp32``, ``fast_bf16`` (unguarded fast copies), ``autocast_bf16`` (the model under bf16
    autocast), ``auto`` (``predict_clips(dtype="auto")``, guard included) and ``auto_dtype``'s name.
    ``golden``: a folder with ``demo_clips.npz`` (tests/golden); else the guard's probe clip.
    """
    import torch

    from .cpu_kernels import build_fast_model
    from .precision import output_deviation, resolve_dtype
    from .predict import predict_clips

    model, clips, reference = _clips_and_reference(checkpoint, golden)
    result: dict[str, Any] = {}
    with torch.inference_mode():
        for dtype, key in ((torch.float32, "fast_fp32"), (torch.bfloat16, "fast_bf16")):
            result[key] = output_deviation(reference, build_fast_model(model, dtype)(clips))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            result["autocast_bf16"] = output_deviation(reference, model(clips))
    auto = predict_clips(model, clips.numpy(), dtype="auto")
    result["auto"] = max(float(abs(auto.clip_probs - reference.clip_probs.numpy()).max()),
                         float(abs(auto.frame_probs - reference.frame_probs.numpy()).max()))
    result["auto_dtype"] = "bf16" if resolve_dtype("auto", torch.device("cpu")) == torch.bfloat16 else "fp32"
    return result


def preset_errors(preset: str, seed: int = 0) -> dict[str, float]:
    """Worst relative error (``|x - ref| / |ref|`` over a hidden state) of a random-weight preset's encoder.

    Keys ``fast_bf16`` (the bf16 fast copy's encoder) and ``autocast_bf16`` (the encoder under autocast),
    against its float32 forward on the probe clip.
    """
    import torch

    from .cpu_kernels import COVERED_KINDS, build_fast_model
    from .model import ActivityModel
    from .precision import probe_clips

    torch.manual_seed(seed)
    model = ActivityModel.from_encoder(preset, gru_hidden=8, gru_layers=1).eval()
    x = model.encoder_input(probe_clips())  # at the encoder's own rate

    def worst(hidden: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
        return max(float((h.float() - r).norm() / r.norm()) for h, r in zip(hidden, reference))

    with torch.inference_mode():
        reference = model.encoder.hidden_states(x)
        result = {"fast_bf16": float("nan")}  # no fast copy for a kind it does not cover
        if model.encoder.kind in COVERED_KINDS:
            fast = build_fast_model(model, torch.bfloat16)
            result["fast_bf16"] = worst(fast.encoder.hidden_states(x), reference)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            result["autocast_bf16"] = worst(model.encoder.hidden_states(x), reference)
    return result


def report(checkpoint: Path | None, golden: Path | None, presets: list[str]) -> dict[str, Any]:
    """Everything above for this process (its ``ONEDNN_MAX_CPU_ISA``), as a JSON-able dict."""
    from .precision import bf16_speedup

    out: dict[str, Any] = {"isa_cap": os.environ.get("ONEDNN_MAX_CPU_ISA", "default"), "onednn_isa": onednn_isa(),
                           "bf16_speedup": bf16_speedup()}
    if checkpoint is not None:
        out["checkpoint"] = checkpoint_deviations(checkpoint, golden)
    out["presets"] = {name: preset_errors(name) for name in presets}
    return out


def report_under_isa(isa: str | None, checkpoint: Path | None, golden: Path | None = None,
                     presets: tuple[str, ...] = (), timeout: float = 600) -> dict[str, Any]:
    """:func:`report` in a fresh process with ``ONEDNN_MAX_CPU_ISA=isa`` (None: no cap)."""
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    if isa is not None:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    command = [sys.executable, "-m", "activity.numerics", "--json"]
    if checkpoint is not None:
        command += ["--ckpt", str(checkpoint)]
    if golden is not None:
        command += ["--golden", str(golden)]
    if presets:
        command += ["--presets", *presets]
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"activity.numerics under ONEDNN_MAX_CPU_ISA={isa} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m activity.numerics",
        description="Compare the bf16 fast paths with float32 on this machine, under every oneDNN ISA the CPU "
        "offers (each in its own process): a checkpoint's probabilities and random-weight encoder presets.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--ckpt", type=Path, default=Path(__file__).resolve().parents[1] / "checkpoints" / "demo",
                   help="checkpoint folder to compare (its probabilities)")
    p.add_argument("--golden", type=Path, default=None,
                   help="folder with demo_clips.npz (tests/golden) to run instead of the guard's probe clip")
    p.add_argument("--presets", nargs="*", default=["tiny", "compact"],
                   help="encoder presets (random weights) whose hidden states to compare")
    p.add_argument("--isa", nargs="*", default=None,
                   help="ONEDNN_MAX_CPU_ISA values to run (default: all this CPU offers)")
    p.add_argument("--json", action="store_true", help="run once in this process and print one JSON line")
    return p


def main(argv: list[str] | None = None) -> int:
    from .errors import ActivityError, run_command

    args = build_parser().parse_args(argv)

    def run(args: argparse.Namespace) -> int:
        if args.ckpt is not None and not args.ckpt.is_dir():
            raise ActivityError(f"--ckpt: checkpoint folder {args.ckpt} does not exist")
        if args.json:
            print(json.dumps(report(args.ckpt, args.golden, args.presets)))
            return 0
        isas = args.isa if args.isa else available_isas()
        unknown = [isa for isa in isas if isa not in ISA_FLAGS]
        if unknown:
            raise ActivityError(f"--isa {' '.join(unknown)}: expected some of {', '.join(ISA_FLAGS)}")
        print("| ONEDNN_MAX_CPU_ISA | oneDNN ISA | bf16/fp32 speed | auto | ckpt fast bf16 | ckpt autocast | "
              "ckpt auto | " + " | ".join(f"{p} fast / autocast" for p in args.presets) + " |")
        print("|---" * (7 + len(args.presets)) + "|")
        for isa in isas:
            row = report_under_isa(isa, args.ckpt, args.golden, tuple(args.presets))
            ck = row["checkpoint"]
            presets = " | ".join(f"{row['presets'][p]['fast_bf16']:.4f} / {row['presets'][p]['autocast_bf16']:.4f}"
                                 for p in args.presets)
            print(f"| {isa} | {row['onednn_isa']} | {row['bf16_speedup']:.2f}x | {ck['auto_dtype']} | "
                  f"{ck['fast_bf16']:.4f} | {ck['autocast_bf16']:.4f} | {ck['auto']:.4f} | {presets} |", flush=True)
        return 0

    return run_command(run, args)


if __name__ == "__main__":
    sys.exit(main())
