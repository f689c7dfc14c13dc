"""The GAN loss family, on discriminator logits.

Each loss is a pair: `d(real_logits, fake_logits) -> scalar` and `g(fake_logits) -> scalar`,
with `readout(logits)`, D's output as that loss reads it (the step's `d_real` / `d_fake`
metrics): a probability for the sigmoid losses, the raw score for least squares (targets 1
and 0), hinge (margins +-1) and Wasserstein (mean d_real - d_fake is the critic's estimate).
Sigmoid losses go through log-sigmoid, so saturated logits give finite values and gradients.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class GanLoss(NamedTuple):
  d: Callable[[jax.Array, jax.Array], jax.Array]
  g: Callable[[jax.Array], jax.Array]
  readout: Callable[[jax.Array], jax.Array] = lambda logits: logits


def _bce_d(real, fake):
  # BCE(sigmoid(real), 1) + BCE(sigmoid(fake), 0), as the tutorial's two BCELoss terms.
  return -jnp.mean(jax.nn.log_sigmoid(real)) - jnp.mean(jax.nn.log_sigmoid(-fake))


LOSSES: dict[str, GanLoss] = {
    # Goodfellow et al.'s practical G loss, and the tutorial's: BCE(D(G(z)), 1).
    "non_saturating": GanLoss(d=_bce_d, g=lambda fake: -jnp.mean(jax.nn.log_sigmoid(fake)),
                              readout=jax.nn.sigmoid),
    # The original minimax G loss, log(1 - D(G(z))): its gradient vanishes when D wins.
    "minimax": GanLoss(d=_bce_d, g=lambda fake: jnp.mean(jax.nn.log_sigmoid(-fake)),
                       readout=jax.nn.sigmoid),
    "least_squares": GanLoss(
        d=lambda real, fake: 0.5 * jnp.mean((real - 1.0) ** 2) + 0.5 * jnp.mean(fake ** 2),
        g=lambda fake: 0.5 * jnp.mean((fake - 1.0) ** 2)),
    "hinge": GanLoss(
        d=lambda real, fake: jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(
            jax.nn.relu(1.0 + fake)),
        g=lambda fake: -jnp.mean(fake)),
    "wasserstein": GanLoss(d=lambda real, fake: jnp.mean(fake) - jnp.mean(real),
                           g=lambda fake: -jnp.mean(fake)),
}


def get_loss(name: str) -> GanLoss:
  if name not in LOSSES:
    raise ValueError(f"Unknown GAN loss {name!r}; known: {sorted(LOSSES)}.")
  return LOSSES[name]
