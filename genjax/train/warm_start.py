"""A run that starts from another run's trained parameters (`config.init_from`).

What a researcher does to change what cannot change inside one run, e.g. to go on training
a model with a decaying learning rate, or another optimizer, after a phase at a constant
rate: the optimizer state's layout differs, so the old run's checkpoints do not resume the
new config (`genjax.checkpoint` names the mismatch). `warm_start(fresh, source)` takes the
new run's freshly initialised state and the other run's trained one (same model) and
returns the fresh state with the other's parameters: every field named '*params' (the last
parameters, not a moving average) and '*stats' (batch statistics, spectral-norm vectors)
comes from `source`; the step, key, optimizer moments and everything else stay fresh, and
a moving average of the parameters (`genjax.train.ema`) starts at the loaded parameters.
The loop applies it once, when the new work directory has no checkpoint yet; from then on
the new run resumes from its own checkpoints.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from genjax.checkpoint import layout, layout_difference
from genjax.train import ema as ema_lib


class WarmStartError(ValueError):
  """The source run's parameters do not fit the new run's model."""


def parameter_fields(state) -> list[str]:
  """The state's fields that `warm_start` copies: 'params', 'g_params', 'd_stats', ..."""
  return [f.name for f in dataclasses.fields(state)
          if f.name.endswith("params") or f.name.endswith("stats")]


def warm_start(fresh: Any, source: Any, source_name: str = "the source run") -> Any:
  """`fresh` with `source`'s parameters and statistics (see the module docstring). Both are
  states of the same task; a field of another shape, dtype or tree is refused, named."""
  if type(fresh) is not type(source):
    raise WarmStartError(f"config.init_from: {source_name} holds a {type(source).__name__}, "
                         f"this run a {type(fresh).__name__} (another model family).")
  copied = {}
  for name in parameter_fields(fresh):
    diff = layout_difference(layout(getattr(source, name)), layout(getattr(fresh, name)),
                             "it", "this model")
    if diff is not None:
      raise WarmStartError(f"config.init_from: the {name} of {source_name} do not fit this "
                           f"model (another architecture?): {diff}.")
    copied[name] = getattr(source, name)
  state = fresh.replace(**copied)
  # A moving average started at the fresh random parameters would be meaningless.
  return ema_lib.start_average(ema_lib.without_average(state), fresh)
