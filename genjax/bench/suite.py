"""The benchmark suite: genjax rows for any config, baseline rows from plain callables.

A row is a flat dict (JSON-able): impl, model, dtype, batch_size, steps (timed), full_epoch,
compile_s, time_s, steps_per_s, examples_per_s (+ warmup_s, epoch_s for genjax). Baselines
are functions `fn(images_u8, *, batch_size, max_steps) -> {'epoch_s', 'steps'}` (see
experiments/benchmarks/torch_tutorial.py), so this package never imports torch.
"""
from __future__ import annotations

import ast
import statistics
from typing import Callable, Mapping, Sequence

import ml_collections
import numpy as np

from genjax import config as config_lib
from genjax.bench.timing import time_epoch
from genjax.train import loop

Baseline = Callable[..., dict]


def genjax_row(config: ml_collections.ConfigDict, images: np.ndarray, labels: np.ndarray, *,
               steps: int = 0, repeats: int = 1, warmup: bool = True) -> dict:
  """One row: `config`'s jitted epoch (or its first `steps` batches when steps > 0)."""
  t = time_epoch(config, images, labels, repeats=repeats, steps=steps, warmup=warmup)
  return {"impl": "genjax", "model": config.model, "dtype": config.compute_dtype,
          "batch_size": config.batch_size, "steps": t.steps_per_epoch,
          "full_epoch": steps <= 0, "compile_s": t.compile_s, "warmup_s": t.warmup_s,
          "epoch_s": t.epoch_s, "time_s": t.median_epoch_s, "steps_per_s": t.steps_per_s,
          "examples_per_s": t.examples_per_s, "num_devices": t.num_devices,
          "nan_guard": config_lib.nan_guard(config) or False}


def baseline_row(name: str, fn: Baseline, images: np.ndarray, *, batch_size: int,
                 steps: int = 0, model: str = "mlp_gan") -> dict:
  """One row from a baseline timing function (one epoch, or its first `steps` batches)."""
  out = fn(images, batch_size=batch_size, max_steps=steps)
  return {"impl": name, "model": model, "dtype": "float32", "batch_size": batch_size,
          "steps": out["steps"], "full_epoch": steps <= 0, "compile_s": None,
          "time_s": out["epoch_s"], "steps_per_s": out["steps"] / out["epoch_s"],
          "examples_per_s": out["steps"] * batch_size / out["epoch_s"]}


def run_suite(config: ml_collections.ConfigDict, images: np.ndarray, labels: np.ndarray, *,
              batch_sizes: Sequence[int] = (64,), dtypes: Sequence[str] = ("float32",),
              baselines: Mapping[str, Baseline] | None = None,
              baseline_batch_sizes: Sequence[int] | None = None, steps: int = 0,
              repeats: int = 1, warmup: bool = True, nan_policies: Sequence[str] = (),
              nan_checks: Sequence[str] = (), variants: Sequence[str] = (), rounds: int = 1,
              baselines_first: bool = False, log: Callable[[str], None] = lambda _: None,
              on_row: Callable[[dict], None] = lambda _: None) -> list[dict]:
  """genjax rows for every (batch size, dtype, NaN guard), then every baseline at its batch
  sizes, all in this process so ratios compare runs under the same machine conditions.
  `nan_policies` (default: the config's own) set `config.nan_policy`; 'off' times the epoch
  without the loop's NaN/Inf guard; each other policy gets a row per `nan_checks` entry
  (`config.nan_check`, default the config's). Each of `variants` ('key=value;key=value' of
  config overrides, e.g. 'd_joint_batch=True') adds the same rows again with those values,
  after the config's own; rows carry their variant ('' for the config's own). `rounds` > 1
  runs the whole list that many times, rows interleaved, and keeps each row's median round
  (`merge_rounds`): on a machine whose speed drifts over minutes, every row then sees the
  same spread of conditions. `on_row` gets every row (of every round) as soon as it is
  measured, e.g. to keep what a run cut off by a time limit had measured; with
  `baselines_first` the baselines run (and reach `on_row`) before the genjax rows, so a run
  cut off among many genjax rows still has what they are compared with. Every genjax row's
  config is checked before anything is timed (`row_configs`)."""
  if rounds < 1:
    raise ValueError(f"rounds must be >= 1, got {rounds}.")
  rows_to_time = row_configs(config, images, labels, batch_sizes, dtypes,
                             settings(config, nan_policies, nan_checks, variants))
  results = []
  for r in range(rounds):
    if rounds > 1:
      log(f"round {r + 1} of {rounds}")
    results.append(_one_round(config, images, labels, batch_sizes, baselines or {},
                              baseline_batch_sizes, steps, repeats, warmup, rows_to_time, log,
                              on_row, baselines_first))
  return merge_rounds(results)


def row_configs(config, images: np.ndarray, labels: np.ndarray, batch_sizes: Sequence[int],
                dtypes: Sequence[str], row_settings: Sequence[tuple[str, dict]]
                ) -> list[tuple[str, dict, ml_collections.ConfigDict]]:
  """(variant, overrides, config) of every genjax row in timing order, each config built
  (`loop.build`: genjax's own checks and refusals) and its XLA options compiled once
  (`loop.checked_compiler_options`): a row genjax or XLA refuses is one error before the
  first row is timed, not after the rows before it have spent their (accelerator) time."""
  out = []
  for batch_size in batch_sizes:
    for dtype in dtypes:
      for variant, overrides in row_settings:
        c = config_lib.override(config, {"batch_size": batch_size, "compute_dtype": dtype,
                                         **overrides})
        config_lib.steps_per_epoch(c, len(labels))  # One clear error if no batch fits.
        loop.build(c, images[:1])
        loop.checked_compiler_options(c)
        out.append((variant, overrides, c))
  return out


def guard_settings(config, nan_policies: Sequence[str], nan_checks: Sequence[str]
                   ) -> list[dict]:
  """The (nan_policy, nan_check) overrides to time: every policy, each guarded one with
  every check; 'off' once."""
  out = []
  for policy in nan_policies or (config.nan_policy,):
    checks = (config.nan_check,) if policy == "off" else (nan_checks or (config.nan_check,))
    out += [{"nan_policy": policy, "nan_check": check} for check in checks]
  return out


def parse_variant(text: str) -> dict:
  """'key=value;key=value' -> {key: value}, values read as Python literals where they are
  (True, 1e-3, 'a'), else kept as strings."""
  out = {}
  for item in filter(None, (t.strip() for t in text.split(";"))):
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
      raise ValueError(f"Benchmark variant {text!r}: expected 'key=value;key=value'.")
    try:
      out[key.strip()] = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
      out[key.strip()] = value.strip()
  return out


def settings(config, nan_policies: Sequence[str], nan_checks: Sequence[str],
             variants: Sequence[str]) -> list[tuple[str, dict]]:
  """(variant, overrides) per genjax row set: the config's own, then every variant, each
  with every NaN-guard setting."""
  return [(v, {**parse_variant(v), **guard}) for v in ("", *variants)
          for guard in guard_settings(config, nan_policies, nan_checks)]


def _one_round(config, images, labels, batch_sizes, baselines, baseline_batch_sizes, steps,
               repeats, warmup, rows_to_time, log, on_row, baselines_first) -> list[dict]:
  rows = []
  if baselines_first:
    rows += _baseline_rows(config, images, batch_sizes, baselines, baseline_batch_sizes, steps,
                           log, on_row)
  for variant, overrides, c in rows_to_time:
    log(f"genjax {c.model} batch {c.batch_size} {c.compute_dtype} {overrides} ...")
    rows.append({**genjax_row(c, images, labels, steps=steps, repeats=repeats,
                              warmup=warmup), "variant": variant})
    on_row(rows[-1])
    log(f"  {rows[-1]['steps_per_s']:.2f} steps/s")
  if not baselines_first:
    rows += _baseline_rows(config, images, batch_sizes, baselines, baseline_batch_sizes, steps,
                           log, on_row)
  return rows


def _baseline_rows(config, images, batch_sizes, baselines, baseline_batch_sizes, steps, log,
                   on_row) -> list[dict]:
  rows = []
  for name, fn in baselines.items():
    for batch_size in (baseline_batch_sizes or batch_sizes):
      log(f"{name} batch {batch_size} ...")
      rows.append(baseline_row(name, fn, images, batch_size=batch_size, steps=steps,
                               model=config.model))
      on_row(rows[-1])
      log(f"  {rows[-1]['steps_per_s']:.2f} steps/s")
  return rows


def merge_rounds(rounds: Sequence[Sequence[dict]]) -> list[dict]:
  """Row i of every round -> the round with the median time (the lower of the middle two
  for an even count), plus `round_times_s`, every round's time. One round: unchanged."""
  if len(rounds) == 1:
    return list(rounds[0])
  merged = []
  for rows in zip(*rounds, strict=True):
    times = [row["time_s"] for row in rows]
    median = rows[times.index(statistics.median_low(times))]
    merged.append({**median, "round_times_s": times})
  return merged
