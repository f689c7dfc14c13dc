"""One pure GAN training step for any (generator, discriminator, loss).

Per step: one discriminator update on a real batch and a batch of G(z), then one generator
update on fresh z -- the tutorial's D_train then G_train. Keys come from
`fold_in(state.key, state.step)`, so a restored state continues exactly.
"""
from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import optax

from genjax import models
from genjax.train.losses import get_loss
from genjax.train.task import Task, average_over, per_device


@flax.struct.dataclass
class GanState:
  step: jax.Array       # int32 []
  key: jax.Array        # uint32 [2]
  g_params: dict
  d_params: dict
  g_opt: optax.OptState
  d_opt: optax.OptState


def make_optimizers(config) -> tuple[optax.GradientTransformation, ...]:
  adam = functools.partial(optax.adam, b1=config.adam_b1, b2=config.adam_b2)
  return adam(config.lr_g), adam(config.lr_d)


def _step_keys(state: GanState, axis_name: str | None) -> tuple[jax.Array, jax.Array]:
  """(noise key, dropout key) of this step. The noise key is the same on every device: each
  draws z for the global batch and keeps its slice, as one device would. Dropout masks are
  drawn per device (their shape is the local batch), keyed by the device's index."""
  key = jax.random.fold_in(state.key, state.step)
  k_noise, k_drop = jax.random.split(key)
  if axis_name is not None:
    k_drop = jax.random.fold_in(k_drop, jax.lax.axis_index(axis_name))
  return k_noise, k_drop


def _local_normal(key: jax.Array, local_batch: int, dim: int, axis_name: str | None
                  ) -> jax.Array:
  """z [local_batch, dim]: this device's rows of the global batch's noise."""
  if axis_name is None:
    return jax.random.normal(key, (local_batch, dim))
  devices = jax.lax.psum(1, axis_name)
  z = jax.random.normal(key, (local_batch * devices, dim))
  return jax.lax.dynamic_slice_in_dim(z, jax.lax.axis_index(axis_name) * local_batch,
                                      local_batch)


def make_gan_task(config) -> Task:
  generator, discriminator = models.get_gan(config)
  loss = get_loss(config.loss)
  g_tx, d_tx = make_optimizers(config)
  latent_dim = config.latent_dim

  def init(key: jax.Array, batch: dict) -> GanState:
    k_g, k_d, k_state = jax.random.split(key, 3)
    z = jnp.zeros((1, latent_dim), jnp.float32)
    g_params = generator.init(k_g, z)
    d_params = discriminator.init(k_d, batch["image"][:1], train=False)
    return GanState(step=jnp.zeros((), jnp.int32), key=k_state, g_params=g_params,
                    d_params=d_params, g_opt=g_tx.init(g_params), d_opt=d_tx.init(d_params))

  def make_step(axis_name: str | None = None):
    def mean(tree):
      return average_over(tree, axis_name)

    def d_objective(d_params, g_params, real, z, k_drop):
      fake = jax.lax.stop_gradient(generator.apply(g_params, z))
      k_real, k_fake = jax.random.split(k_drop)
      real_logits = discriminator.apply(d_params, real, train=True, rngs={"dropout": k_real})
      fake_logits = discriminator.apply(d_params, fake, train=True, rngs={"dropout": k_fake})
      d_loss = loss.d(real_logits, fake_logits)
      return d_loss, {"d_loss": d_loss,
                      "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
                      "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits))}

    def g_objective(g_params, d_params, z, k_drop):
      fake_logits = discriminator.apply(d_params, generator.apply(g_params, z), train=True,
                                        rngs={"dropout": k_drop})
      g_loss = loss.g(fake_logits)
      return g_loss, {"g_loss": g_loss}

    def step(state: GanState, batch: dict) -> tuple[GanState, dict]:
      real = batch["image"]  # [B, H, W, C]
      k_noise, k_drop = _step_keys(state, axis_name)
      k_zd, k_zg = jax.random.split(k_noise)
      k_dd, k_dg = jax.random.split(k_drop)
      z_d = _local_normal(k_zd, real.shape[0], latent_dim, axis_name)
      d_grads, d_metrics = jax.grad(d_objective, has_aux=True)(
          per_device(state.d_params, axis_name), state.g_params, real, z_d, k_dd)
      d_updates, d_opt = d_tx.update(mean(d_grads), state.d_opt, state.d_params)
      d_params = optax.apply_updates(state.d_params, d_updates)

      z_g = _local_normal(k_zg, real.shape[0], latent_dim, axis_name)
      g_grads, g_metrics = jax.grad(g_objective, has_aux=True)(
          per_device(state.g_params, axis_name), d_params, z_g, k_dg)
      g_updates, g_opt = g_tx.update(mean(g_grads), state.g_opt, state.g_params)
      g_params = optax.apply_updates(state.g_params, g_updates)

      new_state = state.replace(step=state.step + 1, g_params=g_params, d_params=d_params,
                                g_opt=g_opt, d_opt=d_opt)
      return new_state, mean({**d_metrics, **g_metrics})

    return step

  def sample(state: GanState, key: jax.Array, num: int, labels=None) -> jax.Array:
    del labels  # Unconditional.
    z = jax.random.normal(key, (num, latent_dim))
    return generator.apply(state.g_params, z, train=False)

  return Task(init=init, make_step=make_step, sample=sample)
