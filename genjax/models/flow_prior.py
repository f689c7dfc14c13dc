"""A RealNVP flow over a VAE's latents: a learned prior r(z) fitted after training.

The flexible alternative to `latent_prior`'s Gaussian mixture for the same job: the trained
encoder and decoder stay as they are and r replaces N(0, I) as p(z). The flow is Dinh et
al.'s real NVP (2017): affine coupling layers, each keeping a fixed random half of the
latents and shifting / scaling the other half by an MLP of the kept half, then a learned
diagonal affine map onto N(0, I). `fit` trains it on the aggregate posterior itself, a fresh
z ~ q(z|x) for random training images x at every step, i.e. it minimises the cross-entropy
E_x E_q(z|x) [-log r(z)]: the prior term of the ELBO, the rest of which it leaves unchanged.

A fitted flow is a `FlowPrior`: its parameters (a pytree of arrays) and its shape (static),
so it passes through `jax.jit` like the mixture; `latent_prior.log_prob` / `sample` / `save`
/ `load` take either.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

MASK_SEED = 0


def coupling_masks(latent_dim: int, layers: int) -> np.ndarray:
  """[layers, latent_dim] of 0/1: the latents each coupling layer keeps. Layers go in pairs:
  a random half (drawn with MASK_SEED, so a saved flow needs only its parameters), then the
  other half, so every latent is transformed in every pair."""
  rng = np.random.default_rng(MASK_SEED)
  masks = np.zeros((layers, latent_dim), np.float32)
  for i in range(0, layers, 2):
    masks[i, rng.permutation(latent_dim)[:latent_dim // 2]] = 1.0
    masks[i + 1:i + 2] = 1.0 - masks[i]
  return masks


class Coupling(nn.Module):
  """The kept latents (the others zeroed) -> (shift, log-scale) of the others, the log-scale
  bounded by tanh; zero-initialised output, so a new layer is the identity."""
  hidden: int

  @nn.compact
  def __call__(self, kept: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = nn.gelu(nn.Dense(self.hidden)(kept))
    h = nn.gelu(nn.Dense(self.hidden)(h))
    shift, raw_scale = jnp.split(
        nn.Dense(2 * kept.shape[-1], kernel_init=nn.initializers.zeros)(h), 2, axis=-1)
    return shift, jnp.tanh(raw_scale)


class RealNVP(nn.Module):
  """z [B, L] -> (u, log |det du/dz|) [B, L], [B]; `inverse` maps u back to z."""
  latent_dim: int
  layers: int
  hidden: int

  def setup(self):
    self.couplings = [Coupling(self.hidden) for _ in range(self.layers)]
    self.loc = self.param("loc", nn.initializers.zeros, (self.latent_dim,))
    self.log_scale = self.param("log_scale", nn.initializers.zeros, (self.latent_dim,))

  def __call__(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    log_det = jnp.zeros(z.shape[:-1])
    masks = coupling_masks(self.latent_dim, self.layers)
    for coupling, mask in zip(self.couplings, masks, strict=True):
      shift, log_scale = coupling(z * mask)
      z = mask * z + (1 - mask) * (z - shift) * jnp.exp(-log_scale)
      log_det -= jnp.sum((1 - mask) * log_scale, axis=-1)
    return (z - self.loc) * jnp.exp(-self.log_scale), log_det - jnp.sum(self.log_scale)

  def inverse(self, u: jax.Array) -> jax.Array:
    z = u * jnp.exp(self.log_scale) + self.loc
    masks = coupling_masks(self.latent_dim, self.layers)
    for coupling, mask in reversed(list(zip(self.couplings, masks, strict=True))):
      shift, log_scale = coupling(z * mask)
      z = mask * z + (1 - mask) * (z * jnp.exp(log_scale) + shift)
    return z


class FlowPrior(struct.PyTreeNode):
  """A fitted flow: `params` of RealNVP(latent_dim, layers, hidden)."""
  params: Any
  layers: int = struct.field(pytree_node=False)
  hidden: int = struct.field(pytree_node=False)

  @property
  def latent_dim(self) -> int:
    return int(np.shape(self.params["params"]["loc"])[0])

  @property
  def module(self) -> RealNVP:
    return RealNVP(self.latent_dim, self.layers, self.hidden)


def init(key: jax.Array, latent_dim: int, layers: int, hidden: int) -> FlowPrior:
  """A new flow: the identity map, i.e. r = N(0, I)."""
  module = RealNVP(latent_dim, layers, hidden)
  return FlowPrior(module.init(key, jnp.zeros((1, latent_dim))), layers, hidden)


def log_prob(prior: FlowPrior, z: jax.Array) -> jax.Array:
  """log r(z) over the last axis: [..., L] -> [...]."""
  flat = z.reshape(-1, z.shape[-1])
  u, log_det = prior.module.apply(prior.params, flat)
  log_r = jax.scipy.stats.norm.logpdf(u).sum(-1) + log_det
  return log_r.reshape(z.shape[:-1])


def sample(prior: FlowPrior, key: jax.Array, num: int) -> jax.Array:
  """`num` draws z ~ r: the inverse map of N(0, I) draws, [num, L]."""
  u = jax.random.normal(key, (num, prior.latent_dim))
  return prior.module.apply(prior.params, u, method=RealNVP.inverse)


def check(prior: FlowPrior, latent_dim: int) -> None:
  """One clear error when the parameters are not those of the flow's shape or the model's
  latent size."""
  expected = jax.eval_shape(lambda: init(jax.random.PRNGKey(0), latent_dim, prior.layers,
                                         prior.hidden).params)
  if jax.tree.structure(prior.params) != jax.tree.structure(expected) or [
      np.shape(leaf) for leaf in jax.tree.leaves(prior.params)] != [
          leaf.shape for leaf in jax.tree.leaves(expected)]:
    raise ValueError(f"Flow prior does not fit a model with {latent_dim} latents and "
                     f"{prior.layers} coupling layers of {prior.hidden}: its parameters "
                     "have other shapes.")


def fit(means: np.ndarray, stds: np.ndarray, *, layers: int = 8, hidden: int = 512,
        steps: int = 15000, batch_size: int = 512, learning_rate: float = 1e-3,
        seed: int = 0, log_fn: Callable[[int, float], None] | None = None) -> FlowPrior:
  """A flow trained on the aggregate posterior of diagonal Gaussians q(z|x_n) = N(means[n],
  stds[n]^2): `means`, `stds` [N, L], or [R, N, L] for R encodings of each image (e.g. R
  binarisations), a fresh z of `batch_size` random (r, n) every step. Adam with a cosine-
  decayed rate, gradients clipped to norm 1. `log_fn(step, loss)`, if given, is called every
  max(1, steps // 20) steps (20 times for a multiple of 20 steps) with the batch's mean
  -log r(z)."""
  means, stds = (jnp.asarray(a, jnp.float32) for a in (means, stds))
  if means.ndim == 2:
    means, stds = means[None], stds[None]
  if means.ndim != 3 or means.shape != stds.shape:
    raise ValueError(f"fit needs means and stds of one shape [N, L] or [R, N, L], got "
                     f"{means.shape} and {stds.shape}.")
  key = jax.random.PRNGKey(seed)
  prior = init(jax.random.fold_in(key, 0), means.shape[-1], layers, hidden)
  optimizer = optax.chain(optax.clip_by_global_norm(1.0),
                          optax.adam(optax.cosine_decay_schedule(learning_rate, steps)))

  @jax.jit
  def step(params, opt_state, step_key, means, stds):
    k_r, k_n, k_z = jax.random.split(step_key, 3)
    r = jax.random.randint(k_r, (batch_size,), 0, means.shape[0])
    n = jax.random.randint(k_n, (batch_size,), 0, means.shape[1])
    z = means[r, n] + stds[r, n] * jax.random.normal(k_z, (batch_size, means.shape[-1]))
    loss, grads = jax.value_and_grad(
        lambda p: -jnp.mean(log_prob(prior.replace(params=p), z)))(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  params, opt_state = prior.params, optimizer.init(prior.params)
  for i in range(steps):
    params, opt_state, loss = step(params, opt_state, jax.random.fold_in(key, i + 1), means,
                                   stds)
    if log_fn is not None and (i + 1) % max(1, steps // 20) == 0:
      log_fn(i + 1, float(loss))
  return prior.replace(params=params)
