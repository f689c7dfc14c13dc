"""An exponential moving average of the parameters (Polyak averaging), as an optax
transformation chained after the optimizer.

What a researcher samples and scores is often this average rather than the last iterate
(StyleGAN's G_ema, PixelCNN++'s Polyak-averaged weights). `param_average(decay)` passes the
updates through unchanged and keeps, in its own state, the average of the parameters the
updates lead to; chained last (`with_average`), it rides in the optimizer state, so the
checkpoints carry it and training is bit for bit that of a run without it. Early on the
decay follows TF's `ExponentialMovingAverage(num_updates=t)` rule, min(decay, (1 + t) /
(10 + t)), so the average is not dominated by the initial parameters; the update is
`optax.incremental_update`. With decay 0 the optimizer is returned as it is: its state and
every checkpoint are those of a run without an average.

Sampling and scoring use the average where the optimizer state holds one
(`sampling_params`); `choose(state, False)` makes them use the last parameters. A run
checkpointed without an average can be resumed with one: the loop restores it
`without_average` and `start_average` begins the average at the restored parameters.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class ParamAverageState(NamedTuple):
  count: jax.Array   # int32 []: updates averaged so far
  average: Any       # the parameters' pytree, or None in a state made by `choose(..., False)`


def decay_at(count: jax.Array, decay: float) -> jax.Array:
  """The decay of update number `count` (0-based): min(decay, (1 + count) / (10 + count))."""
  count = jnp.asarray(count, jnp.float32)
  return jnp.minimum(decay, (1.0 + count) / (10.0 + count))


def check_decay(decay: float) -> None:
  if not 0.0 <= decay < 1.0:
    raise ValueError(f"config.ema_decay must lie in [0, 1) (0: off), got {decay}.")


def _fresh(params) -> ParamAverageState:
  """An average that starts at `params`. A copy: the state must not hold one buffer twice
  (the loop donates it)."""
  return ParamAverageState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.array, params))


def param_average(decay: float) -> optax.GradientTransformation:
  """Updates unchanged; state: the moving average of `params + updates` with `decay`."""
  check_decay(decay)

  def init(params):
    return _fresh(params)

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("param_average needs the parameters: call update(g, state, params).")
    new = optax.apply_updates(params, updates)
    step = 1.0 - decay_at(state.count, decay)
    return updates, ParamAverageState(state.count + 1,
                                      optax.incremental_update(new, state.average, step))

  return optax.GradientTransformation(init, update)


def with_average(tx: optax.GradientTransformation, decay: float
                 ) -> optax.GradientTransformation:
  """`tx` followed by `param_average(decay)`; `tx` itself when decay is 0."""
  return tx if decay == 0.0 else optax.chain(tx, param_average(decay))


def _average_state(opt_state) -> ParamAverageState | None:
  return optax.tree_utils.tree_get(opt_state, "ParamAverageState")


def has_average(opt_state) -> bool:
  found = _average_state(opt_state)
  return found is not None and found.average is not None


def params_name(opt_state) -> str:
  """Which parameters `sampling_params` gives, for results files: 'moving average' or 'last'."""
  return "moving average" if has_average(opt_state) else "last"


def sampling_params(params, opt_state):
  """The parameters to sample and score with: the average where `opt_state` keeps one."""
  return _average_state(opt_state).average if has_average(opt_state) else params


def choose(state, use_average: bool):
  """`state` as it is (`use_average`), or with its optimizers' averages dropped, so that the
  last parameters are sampled and scored. Not a state to train on."""
  if use_average:
    return state
  fields = {f: map_average(getattr(state, f), lambda _: None) for f in _opt_fields(state)}
  return state.replace(**fields)


def map_average(opt_state, fn):
  """`opt_state` with each parameters' average replaced by `fn(average)`; unchanged where it
  keeps none."""
  is_average = lambda s: isinstance(s, ParamAverageState)
  swap = lambda s: (s._replace(average=fn(s.average))
                    if is_average(s) and s.average is not None else s)
  return jax.tree.map(swap, opt_state, is_leaf=is_average)


def _opt_fields(state) -> list[str]:
  """The state's optimizer-state fields ('opt', 'g_opt', ...), each beside its parameters
  ('params', 'g_params', ...)."""
  return [f.name for f in dataclasses.fields(state) if f.name.endswith("opt")]


def _params_of(opt_field: str) -> str:
  return opt_field[:-len("opt")] + "params"


def without_average(target):
  """A state (or its abstract shapes) with each average-keeping optimizer state replaced by
  the optimizer's own: what a run with config.ema_decay = 0 holds."""
  inner = {f: getattr(target, f)[0] for f in _opt_fields(target)
           if has_average(getattr(target, f))}
  return target.replace(**inner)


def start_average(state, target):
  """`state` (restored `without_average(target)`) with an average starting at its current
  parameters wherever `target` keeps one; the decay's warm-up counts from here."""
  started = {}
  for f in _opt_fields(target):
    if has_average(getattr(target, f)):
      started[f] = (getattr(state, f), _fresh(getattr(state, _params_of(f))))
  return state.replace(**started)
