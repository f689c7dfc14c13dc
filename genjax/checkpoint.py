"""The only module that touches Orbax: a thin wrapper over `ocp.CheckpointManager`.

A checkpoint is a step directory holding two items: 'state' (the train-state pytree, saved
with StandardSave and restored into an `eval_shape` tree so dtypes, shapes and shardings
come back exactly) and 'meta' (JSON: epoch, metrics, anything the loop wants to keep, plus
an integrity record: the state's tree layout and a SHA-256 of its bytes).

Crash safety. Orbax writes each step into `<step>.orbax-checkpoint-tmp-*` and renames it
when complete, so a killed save never replaces a good checkpoint. What a crash or a bad
disk can still leave behind is handled here, never by deleting:
  * a temporary (unfinished) directory, or a step directory missing a part, is reported by
    name and moved to `<directory>_quarantine/` when the Checkpointer opens;
  * a step that fails to restore or whose bytes do not match their SHA-256 (truncated
    files, garbage bytes, deleted metadata) is reported, quarantined, and `restore()` falls
    back to the previous step;
  * a checkpoint of another architecture is not damage: it raises `CheckpointMismatchError`
    at once, naming the first differing leaf.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp
from absl import logging

INTEGRITY_KEY = "_integrity"  # Reserved key of the meta item.
_ITEMS = ("state", "meta")
_TMP_MARK = ".orbax-checkpoint-tmp"
# Orbax's error when the restore target's containers differ from the saved tree's.
_STRUCTURE_MISMATCH = "tree structures do not match"


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be restored into the expected state."""


class CheckpointCorruptError(CheckpointError):
  """A step directory that is incomplete or damaged (a fallback can skip it)."""


class CheckpointMismatchError(CheckpointError):
  """A readable checkpoint of a different model/config (no fallback: a user error)."""


class Checkpointer:
  """Save every k epochs, keep the last n and, with `best_metric`, also the best one by it.

  `problems` lists (path, reason) for every partial or damaged step directory found, in the
  order found; each was also logged as a warning and moved to `quarantine_dir` -- by the
  one process with `moves_bad_steps` (process 0 of the training run; its other processes and
  readers, e.g. an evaluation beside a running training, only skip it, so no two processes
  move the same directory and no save in progress is moved from under its writer).
  """

  def __init__(self, directory: str, *, max_to_keep: int = 3, best_metric: str = "",
               best_mode: str = "min", async_save: bool = False,
               moves_bad_steps: bool = True):
    if max_to_keep < 1:
      raise ValueError(f"max_to_keep must be >= 1 (the latest checkpoint is always kept), got "
                       f"{max_to_keep}.")
    self.directory = os.path.abspath(directory)
    self.moves_bad_steps = moves_bad_steps
    self.best_metric = best_metric
    self.quarantine_dir = self.directory.rstrip("/") + "_quarantine"
    self.problems: list[tuple[str, str]] = []
    for path, reason in find_incomplete(self.directory):
      self._quarantine(path, reason)
    _sync_processes("genjax_checkpointer_open")  # Every process then lists the same steps.
    options = ocp.CheckpointManagerOptions(
        preservation_policy=preservation_policy(max_to_keep, best_metric, best_mode),
        enable_async_checkpointing=async_save, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=_ITEMS)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, *, meta: dict | None = None,
           metrics: dict | None = None) -> None:
    """Saves `state` at `step` (async if so configured); `meta` must be JSON-able. Steps
    must increase: a step at or below the latest one is an error, not a silent skip."""
    self.check_best_metric(metrics or {})
    meta = {**(meta or {}), INTEGRITY_KEY: integrity_record(state)}
    saved = self._manager.save(
        int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                           meta=ocp.args.JsonSave(meta)),
        metrics={k: float(v) for k, v in (metrics or {}).items()} or None)
    if not saved:  # Orbax refused the step; the latest is still the one it compared with.
      raise CheckpointError(f"Orbax did not save step {step} in {self.directory}; the latest "
                            f"step there is {self._manager.latest_step()} (steps must "
                            "increase).")

  def check_best_metric(self, metrics: dict) -> None:
    """The metric that picks the best checkpoint must be one the run reports."""
    if self.best_metric and self.best_metric not in metrics:
      raise ValueError(f"The best checkpoint is kept by {self.best_metric!r} "
                       f"(config.keep_best_metric), which is not one of this run's metrics "
                       f"{sorted(metrics)}.")

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
    """Restores (state, meta) into `abstract_state`'s structure, a pytree of
    `jax.ShapeDtypeStruct` (e.g. from `jax.eval_shape`).

    With `step=None`, the latest *good* step: damaged steps are reported, quarantined and
    skipped. With an explicit step, that step or an error.
    """
    if step is not None:
      return self._restore_verified(abstract_state, step)
    tried = []
    for candidate in sorted(self._manager.all_steps(), reverse=True):
      try:
        return self._restore_verified(abstract_state, candidate)
      except CheckpointCorruptError as e:
        tried.append(str(e))
        self._quarantine(self.step_path(candidate), str(e))
        # Process 0 has moved it before any process lists the steps again: otherwise another
        # process could keep the damaged step as its latest and refuse the next save.
        _sync_processes(f"genjax_checkpoint_quarantined_{candidate}")
        self._manager.reload()
    if tried:
      raise CheckpointCorruptError(f"No restorable checkpoint in {self.directory}; every "
                                   "step is damaged (moved to "
                                   f"{self.quarantine_dir}):\n  " + "\n  ".join(tried))
    raise CheckpointError(f"No checkpoint in {self.directory}.")

  def step_path(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _restore_verified(self, abstract_state: Any, step: int) -> tuple[Any, dict]:
    path = self.step_path(step)
    try:  # Meta first: it is tiny and says whether the architecture matches.
      meta = dict(self._manager.restore(
          step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta or {})
    except Exception as e:  # Orbax raises ValueError/KeyError/FileNotFoundError variously.
      raise CheckpointCorruptError(f"{path}: meta unreadable ({type(e).__name__}: "
                                   f"{_first_line(e)})") from e
    record = meta.pop(INTEGRITY_KEY, None)
    if record is not None:
      check_layout(record.get("layout", []), layout(abstract_state), path)
    try:
      state = self._manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
      ).state
    except Exception as e:
      if record is None:  # Pre-integrity checkpoint: cannot tell mismatch from damage.
        raise CheckpointError(
            f"Checkpoint {path} cannot be restored into this model's state "
            f"({type(e).__name__}: {_first_line(e)}). Is it from another model or config, "
            "or damaged?") from e
      if _STRUCTURE_MISMATCH in str(e):  # Same leaves, other containers: not damage.
        raise CheckpointMismatchError(
            f"Checkpoint {path} has this model's leaves in another tree structure (e.g. a "
            f"state field that is None on one side only): {_first_line(e)}") from e
      raise CheckpointCorruptError(f"{path}: state unreadable ({type(e).__name__}: "
                                   f"{_first_line(e)})") from e
    check_layout(layout(state), layout(abstract_state), path)
    if record is not None and record.get("sha256") != state_digest(state):
      raise CheckpointCorruptError(f"{path}: state bytes do not match their SHA-256 "
                                   "(damaged files)")
    return state, meta

  def _quarantine(self, path: str, reason: str) -> None:
    """Moves a bad step directory aside (never deletes it) and reports it by name."""
    self.problems.append((path, reason))
    if not self.moves_bad_steps:  # A reader, or a process other than the run's process 0.
      logging.warning("genjax checkpoint: %s is partial or damaged (%s); skipped and left in "
                      "place (only the training run's process 0 moves it to %s).", path,
                      reason, self.quarantine_dir)
      return
    os.makedirs(self.quarantine_dir, exist_ok=True)
    target = os.path.join(self.quarantine_dir, os.path.basename(path))
    n = 1
    while os.path.exists(target):
      target = os.path.join(self.quarantine_dir, f"{os.path.basename(path)}.{n}")
      n += 1
    shutil.move(path, target)
    logging.warning("genjax checkpoint: %s is partial or damaged (%s); moved to %s and "
                    "skipped.", path, reason, target)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def preservation_policy(max_to_keep: int, best_metric: str = "", best_mode: str = "min"):
  """Keep the latest `max_to_keep` steps and, with `best_metric`, also the best step by it."""
  latest = ocp.checkpoint_managers.LatestN(n=max_to_keep)
  if not best_metric:
    return latest
  best = ocp.checkpoint_managers.BestN(
      get_metric_fn=lambda metrics: float(metrics[best_metric]), reverse=best_mode == "min",
      n=1, keep_checkpoints_without_metrics=False)
  return ocp.checkpoint_managers.AnyPreservationPolicy([latest, best])


def find_incomplete(directory: str) -> list[tuple[str, str]]:
  """(path, reason) of each unfinished or structurally incomplete step directory."""
  if not os.path.isdir(directory):
    return []
  out = []
  for name in sorted(os.listdir(directory)):
    path = os.path.join(directory, name)
    if _TMP_MARK in name:
      out.append((path, "unfinished save (temporary directory)"))
    elif re.fullmatch(r"\d+", name) and os.path.isdir(path):
      missing = [p for p in ("_CHECKPOINT_METADATA", *_ITEMS)
                 if not os.path.exists(os.path.join(path, p))]
      if missing:
        out.append((path, f"missing {', '.join(missing)}"))
  return out


def layout(tree: Any) -> list[str]:
  """One 'path shape dtype' line per leaf: what must match for a restore to make sense."""
  return [f"{jax.tree_util.keystr(k)} {tuple(v.shape)} {v.dtype}"
          for k, v in jax.tree_util.tree_leaves_with_path(tree)]


def layout_difference(saved: list[str], expected: list[str], saved_name: str = "checkpoint",
                      expected_name: str = "model") -> str | None:
  """None where two `layout`s agree, else their first difference in words."""
  if list(saved) == list(expected):
    return None
  # Not strict: where one layout extends the other, the fallback names both leaf counts.
  return next((f"{saved_name} has {a!r}, {expected_name} has {b!r}"
               for a, b in zip(saved, expected, strict=False) if a != b),
              f"{saved_name} has {len(saved)} leaves, {expected_name} has {len(expected)}")


def check_layout(saved: list[str], expected: list[str], path: str) -> None:
  diff = layout_difference(saved, expected)
  if diff is not None:
    raise CheckpointMismatchError(
        f"Checkpoint {path} does not match this model's state (different architecture or "
        f"config): {diff}.")


def state_digest(state: Any) -> str:
  """SHA-256 over every leaf's bytes in tree order (one host copy of the state)."""
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(state):
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      leaf = leaf.addressable_data(0)  # Multi-process: genjax's state is replicated.
    h.update(np.ascontiguousarray(jax.device_get(leaf)).tobytes())
  return h.hexdigest()


def integrity_record(state: Any) -> dict:
  return {"layout": layout(state), "sha256": state_digest(state)}


def _sync_processes(name: str) -> None:
  """A barrier over every process of a multi-process run; nothing in a single process."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def _first_line(e: Exception) -> str:
  return (str(e).strip().splitlines() or [""])[0][:200]


def abstract_like(state: Any) -> Any:
  """The restore target for `state`: shapes, dtypes and shardings, no data."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
