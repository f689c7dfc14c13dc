"""NaN / Inf guard inside the jitted step, with no host sync per step.

`guard_step(step)` turns a pure `step(state, batch) -> (state, metrics)` into
`guarded((state, record), batch) -> ((state, record), metrics)` for `lax.scan`. Each step
checks every metric and every floating group of the new state (a non-finite gradient shows
up in the parameters and optimizer moments it updates); `record` keeps the first bad step's
number and a bitmask of its bad terms. The host reads the record once per epoch and then
discards the epoch's state (the loop raises or restores the last good checkpoint), so a bad
state is never saved.

The guard only reads: a healthy run's numbers are untouched, and the state is not held back
on device at the bad step. Holding it back (a select between the old and the new state every
step) kept two copies of the state alive and cost about as much again as the checks
themselves, for a state the host never uses (experiments/RESULTS.md, "the NaN guard's cost").
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

BAD_STEP_KEY = "guard/bad_step"  # Reserved metric names carrying the record to the host.
BAD_TERMS_KEY = "guard/bad_terms"
_MAX_BITS = 31  # Terms past the 31st share the last bit of the int32 mask.


class GuardRecord(NamedTuple):
  bad_step: jax.Array   # int32 []: state.step of the first non-finite step, -1 while healthy.
  bad_terms: jax.Array  # int32 []: bit i set when term_names(...)[i] was non-finite there.


def healthy() -> GuardRecord:
  return GuardRecord(jnp.full((), -1, jnp.int32), jnp.zeros((), jnp.int32))


def state_groups(state: Any) -> list[tuple[str, list[jax.Array]]]:
  """Floating leaves grouped by their top-level field ('g_params', 'd_opt', ...)."""
  groups: dict[str, list] = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
      name = jax.tree_util.keystr(path[:1]).lstrip(".[]'\"").rstrip("]'\"")
      groups.setdefault(name, []).append(leaf)
  return list(groups.items())


def term_names(metric_names: Sequence[str], state: Any) -> list[str]:
  """The terms the guard checks, in bit order: sorted metric names, then state groups."""
  metrics = sorted(k for k in metric_names if not k.startswith("guard/"))
  return metrics + [name for name, _ in state_groups(state)]


def _all_finite(leaves) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def nonfinite_mask(metrics: dict, state: Any) -> jax.Array:
  """int32 bitmask over `term_names(metrics, state)`: bit i set when term i is not finite."""
  checks = [_all_finite([metrics[k]]) for k in sorted(metrics)]
  checks += [_all_finite(leaves) for _, leaves in state_groups(state)]
  bits = [jnp.where(ok, 0, 1 << min(i, _MAX_BITS - 1)) for i, ok in enumerate(checks)]
  return jnp.bitwise_or.reduce(jnp.stack(bits).astype(jnp.int32)) if bits else jnp.int32(0)


def guard_step(step: Callable) -> Callable:
  """Wraps `step(state, batch) -> (state, metrics)` for a `(state, GuardRecord)` carry."""

  def guarded(carry, batch):
    state, record = carry
    new_state, metrics = step(state, batch)
    mask = nonfinite_mask(metrics, new_state)
    first_bad = jnp.logical_and(record.bad_step < 0, mask != 0)
    record = GuardRecord(jnp.where(first_bad, state.step, record.bad_step),
                         jnp.where(first_bad, mask, record.bad_terms))
    return (new_state, record), metrics

  return guarded


def poison_batch(step: Callable, at_step: int) -> Callable:
  """Test hook (config.debug_nan_step): the batch of global step `at_step` becomes NaN,
  inside the jitted step, so the guard can be shown to catch it where it happens."""

  def poisoned(state, batch):
    image = jnp.where(state.step == at_step, jnp.nan, batch["image"])
    return step(state, {**batch, "image": image})

  return poisoned


class NonFiniteError(FloatingPointError):
  """Training produced NaN/Inf; the message names the step and the terms."""


def describe(record: dict, names: Sequence[str]) -> tuple[int, list[str]] | None:
  """(first bad step, bad term names) from a host copy of the record, None if healthy."""
  step = int(record[BAD_STEP_KEY])
  if step < 0:
    return None
  mask = int(record[BAD_TERMS_KEY])
  bad = [n for i, n in enumerate(names) if mask & (1 << min(i, _MAX_BITS - 1))]
  return step, bad


def split_record(metrics: dict) -> tuple[dict, dict]:
  """(metrics without the guard's keys, the guard's keys)."""
  record = {k: v for k, v in metrics.items() if k.startswith("guard/")}
  return {k: v for k, v in metrics.items() if not k.startswith("guard/")}, record
