"""Gradient regularisers of the discriminator, on any `d_fn: images [B,...] -> logits [B]`.

Both need per-sample input gradients, taken as grad of sum_i D(x_i): this equals the
per-sample gradients only when D treats samples independently (no batch norm in D).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

DFn = Callable[[jax.Array], jax.Array]


def _input_grad_sq_norms(d_fn: DFn, x: jax.Array) -> jax.Array:
  """||grad_x D(x_i)||^2 per sample: [B]."""
  grads = jax.grad(lambda x: jnp.sum(d_fn(x)))(x)           # [B, H, W, C]
  return jnp.sum(grads.reshape((x.shape[0], -1)) ** 2, axis=-1)


def r1_penalty(d_fn: DFn, real: jax.Array, gamma: float) -> jax.Array:
  """R1 (Mescheder et al. 2018): (gamma / 2) E_real ||grad_x D(x)||^2."""
  return 0.5 * gamma * jnp.mean(_input_grad_sq_norms(d_fn, real))


def interpolate(real: jax.Array, fake: jax.Array, key: jax.Array) -> jax.Array:
  """x_hat = eps real + (1 - eps) fake, eps ~ U[0, 1] per sample."""
  eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1))
  return eps * real + (1.0 - eps) * fake


def gradient_penalty(d_fn: DFn, x_hat: jax.Array, weight: float) -> jax.Array:
  """WGAN-GP (Gulrajani et al. 2017): weight * E (||grad D(x_hat)||_2 - 1)^2.

  The square root of a zero norm has an infinite derivative; the tiny floor keeps the
  second-order gradient finite without changing any value above 1e-12.
  """
  norms = jnp.sqrt(_input_grad_sq_norms(d_fn, x_hat) + 1e-12)
  return weight * jnp.mean((norms - 1.0) ** 2)
