"""Diagnostics of a GAN state: the generator's gradient under each loss, D's confidence.

Used by experiments/gan_gradients.py to show that the minimax (saturating) G loss gives
vanishing gradients once D rejects the fakes, while the non-saturating one does not.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from genjax import models
from genjax.train.gan import GanState, apply_with_stats
from genjax.train.losses import get_loss


def generator_grad_norms(config, state: GanState, z: jax.Array, loss_names: tuple[str, ...],
                         labels: jax.Array | None = None) -> dict[str, jax.Array]:
  """{'<loss>': ||grad_theta_G loss.g(D(G(z)))||_2, 'd_fake': mean sigmoid D(G(z)),
  'mean_fake_logit': mean D(G(z))}, with G and D in inference mode (no dropout)."""
  generator, discriminator = models.get_gan(config)
  cond = models.is_conditional(generator)

  def fake_logits(g_params):
    fake, _ = apply_with_stats(generator, g_params, state.g_stats, *((z, labels) if cond else (z,)),
                     train=False)
    logits, _ = apply_with_stats(discriminator, state.d_params, state.d_stats,
                       *((fake, labels) if cond else (fake,)), train=False)
    return logits  # [B]

  out = {}
  for name in loss_names:
    grads = jax.grad(lambda p: get_loss(name).g(fake_logits(p)))(state.g_params)
    out[name] = optax.tree.norm(grads)
  logits = fake_logits(state.g_params)
  out["d_fake"] = jnp.mean(jax.nn.sigmoid(logits))
  out["mean_fake_logit"] = jnp.mean(logits)
  return out
