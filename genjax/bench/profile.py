"""Where an epoch's time goes: a `jax.profiler` trace of one jitted epoch, summed by op.

`profile_epoch` runs `config`'s epoch (compiled beforehand, so compilation is not in the
trace) under `jax.profiler.trace(..., create_perfetto_trace=True)` and totals the duration
of every XLA op event in the Perfetto JSON it writes, grouped by op name with the
`.N` suffixes dropped (`dot.12` -> `dot`). On CPU these events come from XLA's thunk
executor; on GPU from the kernels.
"""
from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re

import jax
import ml_collections
import numpy as np

from genjax.train import loop, parallel

_SUFFIX = re.compile(r"[.:]\d+$")
_CONTROL = ("while", "call", "conditional")


def _op_events(trace_path: str) -> list[dict]:
  with gzip.open(trace_path, "rt") as f:
    doc = json.load(f)
  events = doc["traceEvents"] if isinstance(doc, dict) else doc
  return [e for e in events if e.get("ph") == "X" and "dur" in e]


def summarize(trace_path: str, top: int = 15) -> dict:
  """{'total_us', 'ops': [(name, us, share)]} over the trace's complete events whose name
  looks like an HLO op (host-side Python / runtime events excluded)."""
  totals: collections.Counter = collections.Counter()
  for e in _op_events(trace_path):
    name = e["name"]
    # Runtime events and control-flow ops (whose events enclose their bodies' ops) are not
    # op time of their own.
    if name.startswith(("$", "Thunk", "PjRt", "Tfrt", "Execute", "jit_", "ThreadPool")) or (
        " " in name or "(" in name or "::" in name) or _SUFFIX.sub("", name) in _CONTROL:
      continue
    totals[_SUFFIX.sub("", name)] += float(e["dur"])
  total = sum(totals.values())
  return {"total_us": total,
          "ops": [(n, us, us / total) for n, us in totals.most_common(top)] if total else []}


def profile_epoch(config: ml_collections.ConfigDict, images: np.ndarray, labels: np.ndarray,
                  logdir: str, *, steps: int = 20) -> dict:
  """Traces one epoch of `config` (the training loop's, its NaN guard included) on its first
  `steps` batches into `logdir`; returns `summarize` of the trace plus the trace's path."""
  n = steps * config.batch_size
  images, labels = images[:n], labels[:n]
  setup = loop.build(config, images)
  dev_images, dev_labels = parallel.to_device_dataset(images, labels, setup.mesh)
  state = parallel.put_replicated(setup.init(jax.random.PRNGKey(config.seed)), setup.mesh)
  epoch_fn = loop.make_epoch_fn(setup)
  compiled = epoch_fn.lower(state, dev_images, dev_labels).compile()
  state, _ = compiled(state, dev_images, dev_labels)  # warm
  jax.block_until_ready(state)
  with jax.profiler.trace(logdir, create_perfetto_trace=True):
    state, metrics = compiled(state, dev_images, dev_labels)
    jax.block_until_ready((state, metrics))
  paths = sorted(glob.glob(os.path.join(logdir, "**", "*perfetto_trace.json.gz"),
                           recursive=True), key=os.path.getmtime)
  if not paths:
    raise FileNotFoundError(f"jax.profiler wrote no Perfetto trace under {logdir}.")
  return {"trace": paths[-1], **summarize(paths[-1])}
