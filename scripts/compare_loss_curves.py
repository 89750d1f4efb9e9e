"""Compare training runs' loss curves (``trainer_state.json`` of finished checkpoints) and throughput.

The candidate (e.g. two GPUs) matches the reference (one GPU, same global batch and seed) "within noise" when
its per-step loss differences are no larger than those between the reference and a run that differs only in
seed (other negatives sampled, other dropout masks): the noise any rerun would show.

    python scripts/compare_loss_curves.py --reference w/one-gpu --candidate w/two-gpu --noise w/one-gpu-seed43 \\
        --output results/raw/two_gpu.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def load(folder: str) -> dict:
    path = Path(folder) / "trainer_state.json"
    if not path.is_file():
        raise SystemExit(f"error: {path} not found (did the run finish?)")
    return json.loads(path.read_text())


def smooth(values, window: int = 10):
    return [statistics.fmean(values[max(0, i - window + 1):i + 1]) for i in range(len(values))]


def gaps(a, b) -> dict:
    n = min(len(a), len(b))
    diffs = [abs(x - y) for x, y in zip(a[:n], b[:n])]
    tail = max(1, n // 5)
    return {"mean_abs_diff": round(statistics.fmean(diffs), 4), "max_abs_diff": round(max(diffs), 4),
            "mean_abs_diff_smoothed": round(statistics.fmean(abs(x - y) for x, y in zip(smooth(a[:n]),
                                                                                      smooth(b[:n]))), 4),
            "last_20pct_mean_diff": round(statistics.fmean(a[n - tail:n]) - statistics.fmean(b[n - tail:n]), 4)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True)
    parser.add_argument("--candidate", required=True)
    parser.add_argument("--noise", help="a run differing from the reference only in seed")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    runs = {"reference": load(args.reference), "candidate": load(args.candidate)}
    if args.noise:
        runs["noise"] = load(args.noise)
    losses = {k: [loss for _, loss in s["loss_history"]] for k, s in runs.items()}
    report = {"runs": {k: {"folder": Path(getattr(args, k)).name, "world_size": s["world_size"],
                           "steps": s["step"], "tokens": s["tokens"], "train_seconds": s["train_seconds"],
                           "tokens_per_second": s["tokens_per_second"], "losses": [round(x, 5) for x in losses[k]]}
                       for k, s in runs.items()},
              "candidate_vs_reference": gaps(losses["candidate"], losses["reference"])}
    if args.noise:
        report["noise_vs_reference"] = gaps(losses["noise"], losses["reference"])
        report["within_noise"] = (report["candidate_vs_reference"]["mean_abs_diff_smoothed"]
                                  <= report["noise_vs_reference"]["mean_abs_diff_smoothed"])
    ref_tps, cand_tps = runs["reference"]["tokens_per_second"], runs["candidate"]["tokens_per_second"]
    report["speedup"] = round(cand_tps / ref_tps, 3) if ref_tps and cand_tps else None
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'run':<10} {'GPUs':>4} {'steps':>5} {'tokens/s':>10} {'first loss':>10} {'last-20% loss':>13}")
    for k, r in report["runs"].items():
        tail = r["losses"][-max(1, len(r["losses"]) // 5):]
        print(f"{k:<10} {r['world_size']:>4} {r['steps']:>5} {r['tokens_per_second'] or 0:>10,.0f} "
              f"{r['losses'][0]:>10.4f} {statistics.fmean(tail):>13.4f}")
    for key in ("candidate_vs_reference", "noise_vs_reference"):
        if key in report:
            print(f"{key}: {report[key]}")
    if "within_noise" in report:
        print(f"within noise: {report['within_noise']}; speedup {report['speedup']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
