"""Did the discriminator win? The first-epoch stability count of issue 5 (Must show 4b).

`d_wins` judges one epoch's per-step D losses, `run_record` keeps one seed's verdict;
`summary` counts wins and FID per variant over
seeds; `to_markdown` prints that table. Used by experiments/gan_stability.py.
"""
from __future__ import annotations

import numpy as np


def d_wins(d_loss, threshold: float, tail_frac: float) -> tuple[bool, float, float]:
  """(won, tail mean, min 50-step running mean) of one epoch's per-step D losses: D wins
  when the mean over the last `tail_frac` of the steps is below `threshold`."""
  d_loss = np.asarray(d_loss, np.float64)
  tail = float(np.mean(d_loss[-max(1, int(len(d_loss) * tail_frac)):]))
  window = min(50, len(d_loss))
  running = np.convolve(d_loss, np.ones(window) / window, mode="valid")
  return tail < threshold, tail, float(running.min())


def run_record(variant: str, seed: int, d_loss, threshold: float, tail_frac: float) -> dict:
  """The per-seed record `summary` counts, from one epoch's per-step D losses."""
  won, tail, low = d_wins(d_loss, threshold, tail_frac)
  return {"variant": variant, "seed": seed, "d_wins": won, "tail_d_loss": tail,
          "min_running_d_loss": low, "final_d_loss": float(np.asarray(d_loss)[-1])}


def summary(runs: list[dict]) -> list[dict]:
  """One row per variant (in first-seen order) from per-seed run records."""
  out = []
  for variant in dict.fromkeys(r["variant"] for r in runs):
    rs = [r for r in runs if r["variant"] == variant]
    row = {"variant": variant, "seeds": len(rs), "d_wins": sum(r["d_wins"] for r in rs),
           "median_tail_d_loss": float(np.median([r["tail_d_loss"] for r in rs]))}
    if "fid" in rs[0]:
      fids = np.array([r["fid"] for r in rs])
      # The sample std over seeds (ddof 1), as RESULTS.md's other "s.d. over seeds".
      row.update(fid_mean=float(fids.mean()),
                 fid_std=float(fids.std(ddof=1)) if len(fids) > 1 else 0.0,
                 fid_median=float(np.median(fids)),
                 class_coverage_mean=float(np.mean([r["class_coverage"] for r in rs])))
    out.append(row)
  return out


def to_markdown(rows: list[dict]) -> str:
  lines = ["| variant | seeds | D wins epoch 1 | median tail D loss | FID mean (std) | "
           "FID median | class coverage |", "|---|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    fid = (f"{r['fid_mean']:.1f} ({r['fid_std']:.1f}) | {r['fid_median']:.1f} | "
           f"{r['class_coverage_mean']:.2f}" if "fid_mean" in r else "- | - | -")
    lines.append(f"| {r['variant']} | {r['seeds']} | {r['d_wins']}/{r['seeds']} | "
                 f"{r['median_tail_d_loss']:.4f} | {fid} |")
  return "\n".join(lines)
