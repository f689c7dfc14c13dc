"""NaN / Inf guard inside the jitted step, with no host sync per step.

`guard_step(step, check)` turns a pure `step(state, batch) -> (state, metrics)` into
`guarded((state, record), batch) -> ((state, record), metrics)` for `lax.scan`. What each
step reads is `check` (`config.nan_check`):
  * 'metrics' (the config's default): the step's metrics (its losses: a few scalars) only,
    at almost no cost. A non-finite parameter enters the next step's forward pass and makes
    its loss non-finite, so a bad gradient is named one step late, as the next step's loss.
  * 'parameters': also every floating group of the new state except the optimizer states
    ('opt', 'g_opt', ...). A non-finite gradient reaches the parameters it updates in the
    same step (Adam's update is NaN when its moments are), so the parameters name the step
    exactly; reading them costs ~8 % of the MLP GAN's step on a 2-core CPU and 25 % on an
    H200 at batch 64 (a reduction per leaf, each a kernel of its own there).
Every group, the optimizer states (twice the parameters' size) included, is checked once at
the end of the epoch by `check_epoch_end`: what only they show (a finite gradient whose
square overflows Adam's second moment, which then freezes that parameter) or what the last
step did is reported there, marked as found at the epoch's end. `record` keeps the first
bad step's number and a bitmask of its bad terms. The host reads the record once per epoch
and then discards the epoch's state (the loop raises or restores the last good checkpoint),
so a bad state is never saved.

The guard only reads: a healthy run's numbers are untouched, and the state is not held back
on device at the bad step. Holding it back (a select between the old and the new state every
step) kept two copies of the state alive and cost about as much again as the checks
themselves, for a state the host never uses; reading the optimizer states every step cost
about half the checks (experiments/RESULTS.md, "the NaN guard's cost").
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

BAD_STEP_KEY = "guard/bad_step"  # Reserved metric names carrying the record to the host.
BAD_TERMS_KEY = "guard/bad_terms"
AT_EPOCH_END_KEY = "guard/at_epoch_end"
_MAX_BITS = 31  # Terms past the 31st share the last bit of the int32 mask.
CHECKS = ("parameters", "metrics")  # What guard_step reads every step (config.nan_check).


class GuardRecord(NamedTuple):
  bad_step: jax.Array   # int32 []: state.step of the first non-finite step, -1 while healthy.
  bad_terms: jax.Array  # int32 []: bit i set when term_names(...)[i] was non-finite there.
  at_epoch_end: jax.Array  # bool []: found by check_epoch_end (bad_step is the last step).


def healthy() -> GuardRecord:
  return GuardRecord(jnp.full((), -1, jnp.int32), jnp.zeros((), jnp.int32),
                     jnp.zeros((), bool))


def is_optimizer_group(name: str) -> bool:
  """Optimizer-state fields by the tasks' naming ('opt', 'g_opt', 'd_opt')."""
  return name == "opt" or name.endswith("_opt")


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


def nonfinite_mask(metrics: dict, state: Any, groups: str = "all") -> jax.Array:
  """int32 bitmask over `term_names(metrics, state)`: bit i set when term i is not finite.
  `groups` says which state groups are read: 'all', 'parameters' (all but the optimizer
  states) or 'none' (metrics only); the bits of the others stay 0."""
  if groups not in ("all", "parameters", "none"):
    raise ValueError(f"groups={groups!r}; use 'all', 'parameters' or 'none'.")
  reads = lambda name: groups == "all" or (groups == "parameters"
                                           and not is_optimizer_group(name))
  checks = [_all_finite([metrics[k]]) for k in sorted(metrics)]
  checks += [_all_finite(leaves) if reads(name) else jnp.bool_(True)
             for name, leaves in state_groups(state)]
  bits = [jnp.where(ok, 0, 1 << min(i, _MAX_BITS - 1)) for i, ok in enumerate(checks)]
  return jnp.bitwise_or.reduce(jnp.stack(bits).astype(jnp.int32)) if bits else jnp.int32(0)


def guard_step(step: Callable, check: str = "metrics") -> Callable:
  """Wraps `step(state, batch) -> (state, metrics)` for a `(state, GuardRecord)` carry,
  reading what `check` (one of CHECKS) says every step."""
  if check not in CHECKS:
    raise ValueError(f"NaN check {check!r}; use one of {CHECKS}.")
  groups = "parameters" if check == "parameters" else "none"

  def guarded(carry, batch):
    state, record = carry
    new_state, metrics = step(state, batch)
    mask = nonfinite_mask(metrics, new_state, groups)
    first_bad = jnp.logical_and(record.bad_step < 0, mask != 0)
    record = GuardRecord(jnp.where(first_bad, state.step, record.bad_step),
                         jnp.where(first_bad, mask, record.bad_terms), record.at_epoch_end)
    return (new_state, record), metrics

  return guarded


def check_epoch_end(record: GuardRecord, metrics: dict, state: Any) -> GuardRecord:
  """Once per epoch, after the scan: every term of the final `state` (the optimizer states
  included; with the 'metrics' check, every group). A record still healthy takes what this
  finds, at the epoch's last step (`state.step - 1`), marked `at_epoch_end`; a record that
  already holds a step keeps it."""
  mask = nonfinite_mask(metrics, state)
  late = jnp.logical_and(record.bad_step < 0, mask != 0)
  return GuardRecord(jnp.where(late, state.step - 1, record.bad_step),
                     jnp.where(late, mask, record.bad_terms), late)


def poison_batch(step: Callable, at_step: int) -> Callable:
  """Test hook (config.debug_nan_step): the batch of global step `at_step` becomes NaN,
  inside the jitted step, so the guard can be shown to catch it where it happens."""

  def poisoned(state, batch):
    image = jnp.where(state.step == at_step, jnp.nan, batch["image"])
    return step(state, {**batch, "image": image})

  return poisoned


class NonFiniteError(FloatingPointError):
  """Training produced NaN/Inf; the message names the step and the terms."""


class Fault(NamedTuple):
  step: int              # The first step with a non-finite term (see at_epoch_end).
  terms: list[str]       # The non-finite terms there.
  at_epoch_end: bool     # Found by check_epoch_end: only an optimizer state, step = the last.


def describe(record: dict, names: Sequence[str]) -> Fault | None:
  """The fault in a host copy of the record, None if healthy."""
  step = int(record[BAD_STEP_KEY])
  if step < 0:
    return None
  mask = int(record[BAD_TERMS_KEY])
  bad = [n for i, n in enumerate(names) if mask & (1 << min(i, _MAX_BITS - 1))]
  return Fault(step, bad, bool(record.get(AT_EPOCH_END_KEY, False)))


def fault_summary(fault: Fault, epoch: int, check: str) -> str:
  """'Non-finite <terms> at step <s> (epoch <e>)', or where it was found at the epoch end;
  under the 'metrics' check (`check`: what the guard read each step), with what else the
  step's losses may be showing."""
  where = (f"found at the end of epoch {epoch} (after step {fault.step}; the whole state "
           "is checked once per epoch, what config.nan_check names every step)"
           if fault.at_epoch_end else f"at step {fault.step} (epoch {epoch})")
  if check == "metrics" and not fault.at_epoch_end and fault.step > 0:
    where += (f"; config.nan_check='metrics' reads only the losses each step, so they also "
              f"show a non-finite gradient of step {fault.step - 1} (nan_check='parameters' "
              "names such a fault at its own step)")
  return f"Non-finite {', '.join(fault.terms)} {where}"


def as_metrics(record: GuardRecord) -> dict:
  """The record under the reserved metric names, for the epoch's metrics dict."""
  return {BAD_STEP_KEY: record.bad_step, BAD_TERMS_KEY: record.bad_terms,
          AT_EPOCH_END_KEY: record.at_epoch_end}


def split_record(metrics: dict) -> tuple[dict, dict]:
  """(metrics without the guard's keys, the guard's keys)."""
  record = {k: v for k, v in metrics.items() if k.startswith("guard/")}
  return {k: v for k, v in metrics.items() if not k.startswith("guard/")}, record
