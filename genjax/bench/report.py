"""Benchmark rows -> ratios, a markdown table and a JSON document."""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

Row = dict  # see genjax.bench.suite for the keys

_COLUMNS = (("impl", "implementation"), ("model", "model"), ("dtype", "dtype"),
            ("batch_size", "batch"), ("nan_guard", "NaN guard"), ("steps", "timed steps"),
            ("full_epoch", "full epoch"),
            ("compile_s", "compile s"), ("time_s", "time s"), ("steps_per_s", "steps/s"),
            ("examples_per_s", "images/s"))


def add_ratios(rows: Sequence[Row], baselines: Sequence[str]) -> list[Row]:
  """Copies of `rows` where each non-baseline row gets `x_<baseline>`: its steps/s over the
  baseline's at the same batch size (only when both were measured in `rows`)."""
  ref = {(r["impl"], r["batch_size"]): r["steps_per_s"] for r in rows if r["impl"] in baselines}
  out = []
  for r in rows:
    r = dict(r)
    if r["impl"] not in baselines:
      for b in baselines:
        if (b, r["batch_size"]) in ref:
          r[f"x_{b}"] = r["steps_per_s"] / ref[(b, r["batch_size"])]
    out.append(r)
  return out


def _fmt(v: Any) -> str:
  if v is None:
    return "-"
  if isinstance(v, bool):
    return "yes" if v else "no"
  if isinstance(v, float):
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
  if isinstance(v, (list, tuple)):
    return ", ".join(_fmt(x) for x in v)
  return str(v)


def _precision_note(precision: Mapping[str, Any] | None) -> str:
  """'; fp32 matmuls: jax default, torch highest' from `env.matmul_precision()`'s record."""
  if not precision:
    return ""
  sides = [f"{side} {precision[side] or 'default'}" for side in ("jax", "torch")
           if side in precision]
  conv = precision.get("torch_cudnn_conv")
  return "; fp32 matmuls: " + ", ".join(sides) + (f" (torch's cuDNN convs {conv})" if conv
                                                  else "")


def to_markdown(rows: Sequence[Row], env: Mapping[str, Any]) -> str:
  """A markdown table of `rows`, with the environment in a line above it (and every round's
  time when the rows were measured in rounds; `time s` is then the median round's)."""
  ratio_keys = sorted({k for r in rows for k in r if k.startswith("x_")})
  rounds = [("round_times_s", "time s, every round")] if any(
      "round_times_s" in r for r in rows) else []
  variant = [("variant", "variant")] if any(r.get("variant") for r in rows) else []
  cols = (list(_COLUMNS[:5]) + variant + list(_COLUMNS[5:]) + rounds
          + [(k, f"x vs {k[2:]}") for k in ratio_keys])
  load = env.get("load_average_1_5_15")
  lines = [f"Device: {env['device']}; date (UTC): {env['date_utc']}; load average "
           f"(1/5/15 min): {', '.join(f'{x:.1f}' for x in load) if load else 'n/a'}; "
           f"jax {env['versions'].get('jax')}, torch {env['versions'].get('torch')}"
           + (f" on {env['torch_device']}" if env.get("torch_device") else "")
           + _precision_note(env.get("fp32_matmul_precision")) + ".", "",
           "| " + " | ".join(h for _, h in cols) + " |",
           "|" + "---|" * len(cols)]
  for r in rows:
    lines.append("| " + " | ".join(_fmt(r.get(k)) for k, _ in cols) + " |")
  return "\n".join(lines) + "\n"


def to_json(rows: Sequence[Row], env: Mapping[str, Any], **extra: Any) -> str:
  return json.dumps({"environment": dict(env), "rows": list(rows), **extra}, indent=2,
                    sort_keys=True)
