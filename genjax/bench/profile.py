"""Where an epoch's time goes: a `jax.profiler` trace of one jitted epoch, summed by op.

`profile_epoch` runs `config`'s epoch (compiled beforehand, so compilation is not in the
trace) under `jax.profiler.trace(..., create_perfetto_trace=True)` and totals the duration
of every XLA op event in the Perfetto JSON it writes, grouped by op name with the
`.N` suffixes dropped (`dot.12` -> `dot`). On CPU these events come from XLA's thunk
executor; on GPU from the kernels. `device_timeline` says, per line of a device (a GPU's
streams), how many kernels ran, for how long in sum and in union, and over what span: the
count per step, their overlap and the device's idle gaps.
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


def read_trace(trace_path: str) -> list[dict]:
  """The events of a Perfetto JSON trace (.json.gz), read once for `summarize` and
  `device_timeline`."""
  with gzip.open(trace_path, "rt") as f:
    doc = json.load(f)
  return doc["traceEvents"] if isinstance(doc, dict) else doc


def _complete(events: list[dict]) -> list[dict]:
  return [e for e in events if e.get("ph") == "X" and "dur" in e]


def summarize(events: list[dict], top: int = 15) -> dict:
  """{'total_us', 'ops': [(name, us, share)]} over the trace's complete events whose name
  looks like an HLO op (host-side Python / runtime events excluded)."""
  totals: collections.Counter = collections.Counter()
  for e in _complete(events):
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


def _merged_length(intervals: list[tuple[float, float]]) -> float:
  """Length of the union of [start, end) intervals."""
  total, end = 0.0, -np.inf
  for a, b in sorted(intervals):
    if b > end:
      total += b - max(a, end)
      end = b
  return total


def _timeline_row(line: str, events: list[dict]) -> dict:
  spans = [(float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in events]
  return {"line": line, "events": len(spans), "busy_us": sum(b - a for a, b in spans),
          "active_us": _merged_length(spans),
          "span_us": max(b for _, b in spans) - min(a for a, _ in spans)}


def device_timeline(events: list[dict]) -> list[dict]:
  """Per line of each device in the trace (a GPU's streams, XLA's derived lines; processes
  named '/device:...'): `events`, `busy_us` (their durations summed), `active_us` (the
  union of their intervals) and `span_us` (first start to last end); then one row 'streams'
  over every line named 'Stream...' together. busy / active > 1 says kernels overlapped;
  active / span < 1 is the share of the span the device had something running. [] when the
  trace has no device process (XLA:CPU runs its ops on host threads)."""
  processes, threads = {}, {}
  for e in events:
    if e.get("ph") == "M" and e.get("name") == "process_name":
      processes[e["pid"]] = e["args"]["name"]
    elif e.get("ph") == "M" and e.get("name") == "thread_name":
      threads[(e["pid"], e["tid"])] = e["args"]["name"]
  lines = collections.defaultdict(list)
  for e in _complete(events):
    if processes.get(e.get("pid"), "").startswith("/device:"):
      lines[(e["pid"], e.get("tid"))].append(e)
  rows, streams = [], []
  for (pid, tid), line_events in sorted(lines.items(), key=lambda kv: str(kv[0])):
    name = f"{processes[pid]} {threads.get((pid, tid), tid)}"
    rows.append(_timeline_row(name, line_events))
    if str(threads.get((pid, tid), "")).startswith("Stream"):
      streams += line_events
  if streams:
    rows.append(_timeline_row("streams", streams))
  return rows


def profile_epoch(config: ml_collections.ConfigDict, images: np.ndarray, labels: np.ndarray,
                  logdir: str, *, steps: int = 20) -> dict:
  """Traces one epoch of `config` (the training loop's, its NaN guard included) on its first
  `steps` batches into `logdir`; returns `summarize` of the trace plus the trace's path, the
  steps traced and `device_timeline`."""
  n = steps * config.batch_size
  images, labels = images[:n], labels[:n]
  steps = images.shape[0] // config.batch_size  # Fewer when the split is smaller.
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
  events = read_trace(paths[-1])
  return {"trace": paths[-1], "steps": steps, "timeline": device_timeline(events),
          **summarize(events)}
