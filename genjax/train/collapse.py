"""A mode-collapse detector as a pure init/update pair over predicted-class histograms.

The caller classifies a batch of samples (e.g. `genjax.eval.coverage.
predicted_class_histogram`) and passes the histogram of predicted classes, [K] counts
or fractions (normalised here). The detector tracks the normalised entropy H(hist) / log K
(1: every class equally often, 0: one class) and the coverage (fraction of classes holding
at least `min_share / K` of the samples). An update is bad when either falls below its
floor, or when the entropy lies more than `max_drop` below the best seen so far (the
signature of collapse setting in after a healthy start); it fires on the `patience`-th
consecutive bad update and on each bad one after. The first `warmup` updates only record
(the best entropy too): an untrained G's samples all look like one class, which is not a
collapse. A reaction (raise the ADA probability, lower D's learning rate, restore a
checkpoint) is the caller's, on `fired`.
"""
from __future__ import annotations

from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class CollapseState:
  best_entropy: jax.Array  # f32 [] best normalised entropy so far
  strikes: jax.Array       # int32 [] consecutive updates below a floor
  fired: jax.Array         # bool [] latched: collapse was detected
  updates: jax.Array       # int32 [] updates seen


class CollapseReport(NamedTuple):
  entropy: jax.Array       # f32 [] normalised entropy of the histogram
  coverage: jax.Array      # f32 [] fraction of classes with >= min_share / K of the samples
  fired: jax.Array         # bool [] detection on this update


class CollapseDetector(NamedTuple):
  init: callable
  update: callable


def collapse_detector(min_entropy: float = 0.8, min_coverage: float = 0.9,
                      max_drop: float = 0.15, min_share: float = 0.2,
                      patience: int = 2, warmup: int = 0) -> CollapseDetector:
  """`update(histogram [K], state) -> (report, state)`; pure, jit friendly."""
  if patience < 1:
    raise ValueError(f"patience must be >= 1, got {patience}.")

  def init() -> CollapseState:
    return CollapseState(best_entropy=jnp.zeros((), jnp.float32),
                         strikes=jnp.zeros((), jnp.int32), fired=jnp.zeros((), bool),
                         updates=jnp.zeros((), jnp.int32))

  def update(histogram: jax.Array, state: CollapseState
             ) -> tuple[CollapseReport, CollapseState]:
    if histogram.ndim != 1 or histogram.shape[0] < 2:
      raise ValueError(f"histogram must be counts [K>=2], got shape {histogram.shape}.")
    k = histogram.shape[0]
    share = histogram / jnp.maximum(jnp.sum(histogram), 1e-12)
    entropy = -jnp.sum(jnp.where(share > 0, share * jnp.log(share), 0.0)) / jnp.log(k)
    coverage = jnp.mean(share >= min_share / k)
    bad = (state.updates >= warmup) & (
        (entropy < min_entropy) | (coverage < min_coverage)
        | (entropy < state.best_entropy - max_drop))
    strikes = jnp.where(bad, state.strikes + 1, 0)
    fired_now = strikes >= patience
    new = CollapseState(best_entropy=jnp.maximum(state.best_entropy, entropy),
                        strikes=strikes, fired=state.fired | fired_now,
                        updates=state.updates + 1)
    return CollapseReport(entropy, coverage, fired_now), new

  return CollapseDetector(init, update)
