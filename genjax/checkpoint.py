"""The only module that touches Orbax: a thin wrapper over `ocp.CheckpointManager`.

A checkpoint is a step directory holding two items: 'state' (the train-state pytree, saved
with StandardSave and restored into an `eval_shape` tree so dtypes, shapes and shardings
come back exactly) and 'meta' (JSON: epoch, metrics, anything the loop wants to keep).
Orbax writes each step into a temporary directory and renames it when complete, so a
killed save never replaces a good checkpoint.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be restored into the expected state."""


class Checkpointer:
  """Save every k epochs, keep the last n (and optionally the best by a metric)."""

  def __init__(self, directory: str, *, max_to_keep: int = 3, best_metric: str = "",
               best_mode: str = "min", async_save: bool = False):
    self.directory = os.path.abspath(directory)
    best_fn = (lambda metrics: float(metrics[best_metric])) if best_metric else None
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, best_fn=best_fn, best_mode=best_mode,
        keep_checkpoints_without_metrics=False if best_metric else True,
        enable_async_checkpointing=async_save, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, *, meta: dict | None = None,
           metrics: dict | None = None) -> None:
    self._manager.save(
        int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                           meta=ocp.args.JsonSave(meta or {})),
        metrics={k: float(v) for k, v in (metrics or {}).items()} or None)

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
    """Restores (state, meta) at `step` (default: latest) into `abstract_state`'s
    structure, a pytree of `jax.ShapeDtypeStruct` (e.g. from `jax.eval_shape`)."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"No checkpoint in {self.directory}.")
    try:
      restored = self._manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                        meta=ocp.args.JsonRestore()))
    except Exception as e:  # Orbax raises ValueError/KeyError/FileNotFoundError variously.
      raise CheckpointError(
          f"Checkpoint {os.path.join(self.directory, str(step))} cannot be restored into "
          f"this model's state ({type(e).__name__}: {e}). Is it from another model or "
          "config, or damaged?") from e
    _check_same_structure(abstract_state, restored.state, step, self.directory)
    return restored.state, dict(restored.meta or {})

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def _check_same_structure(expected, restored, step, directory) -> None:
  want = jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), expected)
  got = jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), restored)
  if jax.tree.structure(want) != jax.tree.structure(got) or want != got:
    raise CheckpointError(f"Checkpoint step {step} in {directory} does not match this "
                          "model's state (different architecture or config).")


def abstract_like(state: Any) -> Any:
  """The restore target for `state`: shapes, dtypes and shardings, no data."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
