"""One pure GAN training step for any (generator, discriminator, loss, regularisers).

Per step: `n_critic` discriminator updates on the step's real batch (fresh z each), then
one generator update on fresh z -- with the defaults (n_critic=1, no regulariser, no ADA)
exactly the tutorial's D_train then G_train. Keys come from `fold_in(state.key,
state.step)`, so a restored state continues exactly.

Options, all from the config: `loss` (genjax.train.losses), `r1_gamma` (R1 on real images;
with ADA its gradient is w.r.t. the image before augmentation, as in StyleGAN2-ADA),
`gp_weight` (WGAN-GP on real/fake interpolates), `spectral_norm` (in D; its power-iteration
vectors ride in `d_stats`), `n_critic`, `lr_g`/`lr_d` (two time-scales), `ada*` (adaptive
augmentation of everything D sees; p in `state.ada`), `d_joint_batch` (D's update sees the
real and fake batches as one batch of 2B: one forward and backward pass instead of two, the
same loss; dropout masks drawn once for both; only for discriminators without batch
statistics, whose updates would change), `g_joint_batch` (G's two forward passes of a step,
the fakes for D's update and for G's own, as one pass over a batch of 2B: G's parameters are
the same for both, D's update does not touch them; G's gradient comes back through that pass
with the first half's cotangent zero; only for generators without batch statistics and
n_critic = 1). Class-conditional pairs (modules with `conditional == True`) get
`batch['label']` in both G and D; fakes in a step use the real batch's labels, so they
follow the data's class frequencies.

Non-trainable collections (batch-norm statistics, spectral-norm vectors) live in
`g_stats` / `d_stats`, empty dicts for models without them. They are updated by the D call
on real images and then fakes (in that order) during D's update, and by G's forward pass
during G's update; the D calls inside G's update and inside the penalties leave them alone.
In a per-device step (`make_step(axis_name)`) batch norms average their batch statistics over
the axis (`on_axis`), so they normalise with the global batch's statistics.
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import optax

from genjax import models
from genjax.train import ada as ada_lib
from genjax.train import ema as ema_lib
from genjax.train import regularizers
from genjax.train.losses import get_loss
from genjax.train.task import Task, adam, average_over, per_device

EXTRA_KEY_TAG = 0xADA  # Keys beyond the base four (augmentation, GP), kept apart from them.


@flax.struct.dataclass
class GanState:
  step: jax.Array       # int32 []
  key: jax.Array        # uint32 [2]
  g_params: dict        # {'params': ...}
  d_params: dict        # {'params': ...}
  g_opt: optax.OptState
  d_opt: optax.OptState
  g_stats: dict         # e.g. {'batch_stats': ...}; {} when G has none
  d_stats: dict         # e.g. spectral-norm {'batch_stats': ...}; {} when D has none
  ada: ada_lib.AdaState


def make_optimizers(config) -> tuple[optax.GradientTransformation, ...]:
  """G's and D's; G's keeps the moving average of its parameters when config.ema_decay > 0."""
  return (ema_lib.with_average(adam(config, config.lr_g), config.ema_decay),
          adam(config, config.lr_d))


def _per_device_key(key: jax.Array, axis_name: str | None) -> jax.Array:
  """Dropout and augmentation act on the local batch: each device keys its own by index."""
  return key if axis_name is None else jax.random.fold_in(key, jax.lax.axis_index(axis_name))


def _local_normal(key: jax.Array, local_batch: int, dim: int, axis_name: str | None
                  ) -> jax.Array:
  """z [local_batch, dim]: this device's rows of the global batch's noise, so that N devices
  draw the same z as one device does for the whole batch."""
  if axis_name is None:
    return jax.random.normal(key, (local_batch, dim))
  devices = jax.lax.psum(1, axis_name)
  z = jax.random.normal(key, (local_batch * devices, dim))
  return jax.lax.dynamic_slice_in_dim(z, jax.lax.axis_index(axis_name) * local_batch,
                                      local_batch)


def _twice(labels: jax.Array | None) -> jax.Array | None:
  """The labels of a joint batch of 2B made of two halves with the same labels."""
  return None if labels is None else jnp.concatenate([labels, labels])


def on_axis(module, axis_name: str | None):
  """`module` with its batch norms averaging their statistics over the mesh axis `axis_name`,
  for modules with an `axis_name` field (e.g. DCGenerator); any other module unchanged."""
  if axis_name is None or not hasattr(module, "axis_name"):
    return module
  return module.clone(axis_name=axis_name)


def _split_variables(variables) -> tuple[dict, dict]:
  variables = dict(variables)
  params = {"params": variables.pop("params")}
  return params, variables


def apply_with_stats(module, params: dict, stats: dict, *args, **kwargs):
  """module.apply that threads the non-trainable collections: -> (out, new_stats)."""
  if not stats:
    return module.apply(params, *args, **kwargs), stats
  out, new = module.apply({**params, **stats}, *args, mutable=list(stats), **kwargs)
  return out, dict(new)


def make_gan_task(config) -> Task:
  generator, discriminator = models.get_gan(config)
  conditional = models.is_conditional(generator)
  loss = get_loss(config.loss)
  g_tx, d_tx = make_optimizers(config)
  latent_dim, n_critic = config.latent_dim, int(config.n_critic)
  r1_gamma, gp_weight, use_ada = float(config.r1_gamma), float(config.gp_weight), config.ada
  joint_d, joint_g = bool(config.d_joint_batch), bool(config.g_joint_batch)
  if joint_g and n_critic != 1:
    raise ValueError(f"config.g_joint_batch makes the fakes of one D update and one G update "
                     f"in one pass; config.n_critic={n_critic} asks for {n_critic} D updates "
                     "per G update. Set g_joint_batch=False or n_critic=1.")
  controller = ada_lib.ada(config.ada_target, config.ada_interval, config.ada_kimg,
                           config.ada_p_init)

  def g_call(g_params, g_stats, z, labels, train, axis_name=None):
    args = (z, labels) if conditional else (z,)
    return apply_with_stats(on_axis(generator, axis_name), g_params, g_stats, *args,
                            train=train)

  def d_call(d_params, d_stats, x, labels, key, axis_name=None):
    args = (x, labels) if conditional else (x,)
    return apply_with_stats(on_axis(discriminator, axis_name), d_params, d_stats, *args,
                            train=True, rngs={"dropout": key})

  def init(key: jax.Array, batch: dict) -> GanState:
    k_g, k_d, k_state = jax.random.split(key, 3)
    z = jnp.zeros((1, latent_dim), jnp.float32)
    labels = jnp.zeros((1,), jnp.int32)
    g_params, g_stats = _split_variables(generator.init(k_g, *((z, labels) if conditional
                                                               else (z,))))
    image = batch["image"][:1]
    d_params, d_stats = _split_variables(discriminator.init(
        k_d, *((image, labels) if conditional else (image,)), train=False))
    if joint_d and d_stats:
      raise ValueError(f"config.d_joint_batch needs a discriminator without batch statistics; "
                       f"this one keeps {sorted(d_stats)} (spectral norm or batch norm), whose "
                       "updates differ for one joint batch. Set d_joint_batch=False.")
    if joint_g and g_stats:
      raise ValueError(f"config.g_joint_batch needs a generator without batch statistics; "
                       f"this one keeps {sorted(g_stats)}, whose updates differ for one joint "
                       "batch. Set g_joint_batch=False.")
    return GanState(step=jnp.zeros((), jnp.int32), key=k_state, g_params=g_params,
                    d_params=d_params, g_opt=g_tx.init(g_params), d_opt=d_tx.init(d_params),
                    g_stats=g_stats, d_stats=d_stats, ada=controller.init())

  def make_step(axis_name: str | None = None):
    def mean(tree):
      return average_over(tree, axis_name)

    total = (lambda t: jax.lax.psum(t, axis_name)) if axis_name else (lambda t: t)

    def maybe_augment(x, key, p):
      return ada_lib.augment(x, key, p) if use_ada else x

    def g_run(*args):
      return g_call(*args, axis_name=axis_name)

    def d_run(*args):
      return d_call(*args, axis_name=axis_name)

    def d_objective(d_params, d_stats, fake, raw_real, labels, k_drop, k_aug, p):
      k_real, k_fake = jax.random.split(k_drop)
      k_aug_real, k_aug_fake, k_gp = jax.random.split(k_aug, 3)
      real = maybe_augment(raw_real, k_aug_real, p)
      fake = maybe_augment(fake, k_aug_fake, p)
      if joint_d:  # One pass over [real; fake]: fewer, larger kernels.
        both_labels = _twice(labels)
        logits, d_stats = d_run(d_params, d_stats, jnp.concatenate([real, fake]),
                                both_labels, k_real)
        real_logits, fake_logits = jnp.split(logits, 2)
      else:
        real_logits, d_stats = d_run(d_params, d_stats, real, labels, k_real)
        fake_logits, d_stats = d_run(d_params, d_stats, fake, labels, k_fake)
      d_loss = loss.d(real_logits, fake_logits)
      metrics = {"d_loss": d_loss, "d_real": jnp.mean(loss.readout(real_logits)),
                 "d_fake": jnp.mean(loss.readout(fake_logits))}
      objective = d_loss
      d_fn = lambda x: d_run(d_params, d_stats, x, labels, k_real)[0]
      if r1_gamma > 0:  # At the reals before augmentation, through D's real-pass draw.
        r1_fn = lambda x: d_fn(maybe_augment(x, k_aug_real, p))
        metrics["r1"] = regularizers.r1_penalty(r1_fn, raw_real, r1_gamma)
        objective = objective + metrics["r1"]
      if gp_weight > 0:
        x_hat = regularizers.interpolate(real, fake, k_gp)
        metrics["gp"] = regularizers.gradient_penalty(d_fn, x_hat, gp_weight)
        objective = objective + metrics["gp"]
      return objective, (metrics, d_stats, real_logits)

    def g_loss_of_fakes(fake, d_params, d_stats, labels, k_drop, k_aug, p):
      fake_logits, _ = d_run(d_params, d_stats, maybe_augment(fake, k_aug, p), labels, k_drop)
      g_loss = loss.g(fake_logits)
      return g_loss, {"g_loss": g_loss}

    def g_objective(g_params, g_stats, d_params, d_stats, z, labels, k_drop, k_aug, p):
      fake, g_stats = g_run(g_params, g_stats, z, labels, True)
      g_loss, metrics = g_loss_of_fakes(fake, d_params, d_stats, labels, k_drop, k_aug, p)
      return g_loss, (metrics, g_stats)

    def fakes_for_d(state: GanState, k_z, labels, batch: int):
      z = _local_normal(k_z, batch, latent_dim, axis_name)
      return jax.lax.stop_gradient(g_run(state.g_params, state.g_stats, z, labels, True)[0])

    def d_update(state: GanState, real, labels, fake, k_drop, k_aug):
      """One D update against `fake`; returns the state with new D params/opt/stats/ADA and
      metrics."""
      d_grads, (metrics, d_stats, real_logits) = jax.grad(d_objective, has_aux=True)(
          per_device(state.d_params, axis_name), state.d_stats, fake, real, labels, k_drop,
          k_aug, state.ada.p)
      d_updates, d_opt = d_tx.update(mean(d_grads), state.d_opt, state.d_params)
      ada_state = state.ada
      if use_ada:
        ada_state, metrics["ada_r_t"] = controller.update(real_logits, ada_state,
                                                          reduce=total)
        metrics["ada_p"] = ada_state.p
      return state.replace(d_params=optax.apply_updates(state.d_params, d_updates),
                           d_opt=d_opt, d_stats=mean(d_stats), ada=ada_state), metrics

    def step(state: GanState, batch: dict) -> tuple[GanState, dict]:
      real = batch["image"]  # [B, H, W, C]
      labels = batch["label"] if conditional else None
      key = jax.random.fold_in(state.key, state.step)
      k_zd, k_dd, k_zg, k_dg = jax.random.split(key, 4)
      k_aug_d, k_aug_g = jax.random.split(jax.random.fold_in(key, EXTRA_KEY_TAG))
      k_dd, k_dg, k_aug_d, k_aug_g = (_per_device_key(k, axis_name)
                                      for k in (k_dd, k_dg, k_aug_d, k_aug_g))
      if joint_g:
        return joint_g_step(state, real, labels, k_zd, k_dd, k_zg, k_dg, k_aug_d, k_aug_g)
      if n_critic == 1:
        state, d_metrics = d_update(state, real, labels,
                                    fakes_for_d(state, k_zd, labels, real.shape[0]), k_dd,
                                    k_aug_d)
      else:  # The same real batch each time (as WGAN-GP's reference code per G step
        # draws new reals -- here the batch is fixed by the scanned epoch), fresh z.
        keys = jnp.stack([jax.random.split(k, n_critic) for k in (k_zd, k_dd, k_aug_d)], 1)

        def body(state, ks):
          return d_update(state, real, labels, fakes_for_d(state, ks[0], labels, real.shape[0]),
                          ks[1], ks[2])

        state, d_metrics = jax.lax.scan(body, state, keys)
        d_metrics = jax.tree.map(jnp.mean, d_metrics)  # Mean over the critic updates.

      z_g = _local_normal(k_zg, real.shape[0], latent_dim, axis_name)
      g_grads, (g_metrics, g_stats) = jax.grad(g_objective, has_aux=True)(
          per_device(state.g_params, axis_name), state.g_stats, state.d_params, state.d_stats,
          z_g, labels, k_dg, k_aug_g, state.ada.p)
      return g_apply(state, g_grads, g_stats, {**d_metrics, **g_metrics})

    def g_apply(state: GanState, g_grads, g_stats, metrics):
      g_updates, g_opt = g_tx.update(mean(g_grads), state.g_opt, state.g_params)
      g_params = optax.apply_updates(state.g_params, g_updates)
      new_state = state.replace(step=state.step + 1, g_params=g_params, g_opt=g_opt,
                                g_stats=mean(g_stats))
      return new_state, mean(metrics)

    def joint_g_step(state, real, labels, k_zd, k_dd, k_zg, k_dg, k_aug_d, k_aug_g):
      """The step with G's two forward passes as one (config.g_joint_batch): the same z, keys
      and updates as the two-pass step, up to float rounding."""
      batch = real.shape[0]
      z = jnp.concatenate([_local_normal(k, batch, latent_dim, axis_name) for k in (k_zd, k_zg)])
      both_labels = _twice(labels)
      fakes, pullback = jax.vjp(lambda g: g_run(g, state.g_stats, z, both_labels, True)[0],
                                per_device(state.g_params, axis_name))
      fake_d, fake_g = jnp.split(fakes, 2)
      state, d_metrics = d_update(state, real, labels, jax.lax.stop_gradient(fake_d), k_dd,
                                  k_aug_d)
      fake_grad, g_metrics = jax.grad(g_loss_of_fakes, has_aux=True)(
          fake_g, state.d_params, state.d_stats, labels, k_dg, k_aug_g, state.ada.p)
      (g_grads,) = pullback(jnp.concatenate([jnp.zeros_like(fake_grad), fake_grad]))
      return g_apply(state, g_grads, state.g_stats, {**d_metrics, **g_metrics})

    return step

  def sample(state: GanState, key: jax.Array, num: int, labels=None) -> jax.Array:
    z = jax.random.normal(key, (num, latent_dim))
    if conditional and labels is None:  # e.g. the loop's sample grid: classes in turn.
      labels = jnp.arange(num, dtype=jnp.int32) % 10
    if conditional and labels.shape != (num,):
      raise ValueError(f"sample(num={num}) needs labels of shape [{num}], got "
                       f"{tuple(labels.shape)}.")
    params = ema_lib.sampling_params(state.g_params, state.g_opt)
    out, _ = g_call(params, state.g_stats, z, labels, False)
    return out

  return Task(init=init, make_step=make_step, sample=sample, conditional=conditional)
