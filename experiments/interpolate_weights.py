"""Weight-space interpolation between two checkpoints of one architecture, scored across fonts.

    .venv/bin/python experiments/interpolate_weights.py --base checkpoints/demo --tuned runs/next-cpu-remix2/best \
        --val data/synth-slakh/slakh data/next-demo-s20-stems/slakh --alphas 0 0.25 0.5 0.75 1 --out runs/interp

For each ``alpha``, writes ``OUT/alpha-A/`` holding ``(1 - alpha) * base + alpha * tuned`` for every
floating-point tensor (the WiSE-FT recipe of Wortsman et al., 2022: a fine-tuned model averaged with
the one it started from often keeps the start's accuracy and gains the fine-tuning's robustness).
Its thresholds are tuned on the union of the ``--val`` validation splits. Then each is scored by
``experiments/cross_font.py`` (in-domain and held-out course-sized splits) and a Markdown table is
printed; the figures go to ``OUT/interpolation.json``. mAP needs no threshold, so it is the cleaner of
the two columns; macro-F1 also depends on where the thresholds were tuned.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--base", type=Path, default=REPO / "checkpoints" / "demo", help="checkpoint at alpha 0")
    p.add_argument("--tuned", type=Path, required=True, help="checkpoint at alpha 1 (a continuation of --base)")
    p.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0], help="weights of --tuned")
    p.add_argument("--val", type=Path, nargs="+", required=True,
                   help="slakh folders whose validation splits, together, tune each blend's thresholds")
    p.add_argument("--data", type=Path, default=REPO / "data", help="cross_font.py's --data (the two test splits)")
    p.add_argument("--out", type=Path, required=True, help="folder for the blended checkpoints and the JSON")
    p.add_argument("--batch-size", type=int, default=8, help="5 s windows per forward pass")
    return p


def main(argv: list[str] | None = None) -> int:
    from activity.errors import run_command

    return run_command(_run, build_parser().parse_args(argv))


def blend(base: dict, tuned: dict, alpha: float, base_name: str, tuned_name: str) -> dict:
    """``(1 - alpha) * base + alpha * tuned`` per floating tensor; integer buffers are taken from ``base``."""
    from activity.errors import ActivityError

    if base.keys() != tuned.keys():
        raise ActivityError(f"{base_name} and {tuned_name} hold different tensors; only continuations of one model blend")
    out = {}
    for key, a in base.items():
        b = tuned[key]
        if a.shape != b.shape:
            raise ActivityError(f"{key}: shape {tuple(a.shape)} in {base_name} but {tuple(b.shape)} in {tuned_name}")
        out[key] = a.lerp(b.to(a.dtype), alpha) if a.is_floating_point() else a.clone()
    return out


def table(rows: list[dict]) -> str:
    """Markdown table of the rows ``_run`` collects: validation, in-domain and held-out scores per alpha."""
    lines = ["| alpha | validation macro-F1 / mAP | in-domain macro-F1 / mAP | held-out macro-F1 / mAP |",
             "| ---: | ---: | ---: | ---: |"]
    for r in rows:
        splits = r["cross_font"]["splits"]  # keyed "in-domain (FONT)" and "held-out (FONT)", sorted on disk
        cells = [f"{s['macro_f1']:.4f} / {s['mAP']:.4f}"
                 for role in ("in-domain", "held-out") for name, s in splits.items() if name.startswith(role)]
        lines.append(f"| {r['alpha']:g} | {r['val_macro_f1']:.4f} / {r['val_mAP']:.4f} | {' | '.join(cells)} |")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    sys.path.insert(0, str(REPO / "experiments"))
    import cross_font

    from activity.api import Detector
    from activity.constants import PROB_EPS
    from activity.datasets import read_split
    from activity.errors import ActivityError
    from activity.evaluate import clip_scores, tune_thresholds
    from activity.fileio import write_json
    from activity.model import ActivityModel

    for a in args.alphas:
        if not 0.0 <= a <= 1.0:
            raise ActivityError(f"--alphas: {a} is outside [0, 1]")
    base = ActivityModel.from_pretrained(args.base)
    tuned = ActivityModel.from_pretrained(args.tuned)
    if base.config != tuned.config:
        raise ActivityError(f"--base {args.base} and --tuned {args.tuned} have different configs")
    vals = [read_split(v, "validation") for v in args.val]
    truth = np.concatenate([v.labels for v in vals])
    base_state, tuned_state = base.state_dict(), tuned.state_dict()

    rows = []
    for alpha in args.alphas:
        model = copy.deepcopy(base)  # a fresh object per blend: nothing cached from the last one's weights
        model.load_state_dict(blend(base_state, tuned_state, alpha, str(args.base), str(args.tuned)))
        model.eval()
        detector = Detector(model, device="cpu", batch_size=args.batch_size)
        probs = np.clip(np.concatenate([detector.split_probs(v) for v in vals]), PROB_EPS, 1 - PROB_EPS)
        thresholds = tune_thresholds(truth, probs)
        val = clip_scores(truth, probs, thresholds)
        model.thresholds = thresholds.tolist()
        folder = model.save_pretrained(args.out / f"alpha-{alpha:g}")
        scores_json = args.out / f"alpha-{alpha:g}.cross_font.json"
        if cross_font.main(["--ckpt", str(folder), "--data", str(args.data), "--levels", "clip",
                            "--batch-size", str(args.batch_size), "--json", str(scores_json)]) != 0:
            raise ActivityError(f"experiments/cross_font.py failed on {folder} (its message is above)")
        rows.append({"alpha": alpha, "val_macro_f1": val["macro_f1"], "val_mAP": val["mAP"],
                     "cross_font": json.loads(scores_json.read_text())})
        print(f"alpha {alpha:g}: validation macro-F1 {val['macro_f1']:.4f}, mAP {val['mAP']:.4f}", flush=True)

    write_json(args.out / "interpolation.json", {"base": str(args.base), "tuned": str(args.tuned),
                                                 "val": [str(v) for v in args.val], "rows": rows})
    print("\n" + table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
