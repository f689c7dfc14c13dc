"""VAE as a `Task`: one pure ELBO step, prior sampling and the importance-weighted bound.

Per step the [-1,1] batch is binarised afresh from the step key (dynamic binarisation) when
the decoder is Bernoulli; the Gaussian decoder models the [0,1] intensities directly. The
loss is the negative ELBO in nats per image, with the analytic KL to N(0, I) and one
reparameterised z per image; with `config.kl_warmup_steps` the gradient is that of
-(log p(x|z) - beta KL), beta rising linearly to 1 (KL annealing), while the logged loss stays
the negative ELBO. With `config.iw_train_samples` = k > 1 the step instead maximises the
importance-weighted bound L_k = E log (1/k) sum_i p(x, z_i) / q(z_i | x) (IWAE, Burda et al.
2016), which is tighter than the ELBO (L_1) and trains the decoder toward a higher log p(x);
the logged loss is then -L_k and `elbo` the ELBO estimated from the same k samples.
`config.iw_gradient = 'dreg'` keeps that bound but estimates the encoder's part of its
gradient with the doubly reparameterised estimator (DReG, Tucker et al. 2019): the same
expectation, a variance that stays low as k grows, where the plain IWAE gradient's encoder
signal-to-noise ratio falls like 1/sqrt(k) (Rainforth et al. 2018).

`config.latent_prior` names a fitted p(z) (`experiments/fit_prior.py`) that replaces N(0, I)
in both bounds, the ELBO's KL then the one-sample log q(z|x) - log r(z); it stays fixed and is
the run's p(z) for evaluation and sampling. `config.frozen` ('encoder' or 'decoder') keeps
one half's parameters as they are: its gradient is not computed (`frozen_gradient` inside
the objective), its updates are zero (Adam's momentum would otherwise move it) and, with
`config.ema_decay`, its half of the moving average is the frozen parameters. Together
they tune an encoder to a prior fitted after training: q(z|x), the importance sampler, moves
toward the posterior under r while the model p(x) = int p(x|z) r(z) dz stays the same, so
its importance-weighted bound can tighten toward log p(x) and not pass it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from genjax.eval import likelihood as lik
from genjax.models import latent_prior as prior_lib
from genjax.models.vae import VAE, get_vae
from genjax.train import ema as ema_lib
from genjax.train.task import ModelState, Task, average_over, likelihood_optimizer, per_device

LOG_SCALE_MIN = -5.0  # Keeps the Gaussian decoder from collapsing its scale onto a pixel.


def step_key(state, axis_name: str | None) -> jax.Array:
  """fold_in(key, step), and the device index under shard_map: shared by the likelihood
  tasks so a restored state continues exactly."""
  key = jax.random.fold_in(state.key, state.step)
  if axis_name is not None:
    key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
  return key


def make_data_fn(likelihood: str):
  """(key, images in [-1,1]) -> the x the model explains: {0,1} or [0,1]."""
  if likelihood == "bernoulli":
    return lik.binarize
  return lambda key, images: lik.to_unit(images)


def make_log_px_given_z(likelihood: str):
  """(decoder output [B,H,W,P], x [B,H,W,1]) -> log p(x | z) [B]."""
  if likelihood == "bernoulli":
    return lambda out, x: lik.bernoulli_log_prob(out, x)
  return lambda out, x: lik.gaussian_log_prob(
      out[..., :1], jnp.maximum(out[..., 1:], LOG_SCALE_MIN), x)


def kl_to_standard_normal(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mean, exp(logvar)) || N(0, I)) summed over latents: [B, L] -> [B]."""
  return 0.5 * jnp.sum(jnp.exp(logvar) + mean ** 2 - 1.0 - logvar, axis=-1)


def kl_weight(step: jax.Array, warmup_steps: int) -> jax.Array:
  """KL annealing: min(1, (step + 1) / warmup_steps), 1 throughout when warmup_steps is 0."""
  if warmup_steps <= 0:
    return jnp.float32(1.0)
  return jnp.minimum(1.0, (step + 1).astype(jnp.float32) / warmup_steps)


def elbo(vae: VAE, log_px_given_z, params, x: jax.Array, key: jax.Array, prior=None
         ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(elbo, log p(x|z), KL) per image [B], one reparameterised sample; the KL analytic for
  N(0, I), else log q(z|x) - log r(z) at the sample for the fitted `prior` r."""
  mean, logvar = vae.apply(params, x, method=VAE.encode)
  std = jnp.exp(0.5 * logvar)
  z = mean + std * jax.random.normal(key, mean.shape)
  recon = log_px_given_z(vae.apply(params, z, method=VAE.decode), x)
  if prior is None:
    kl = kl_to_standard_normal(mean, logvar)
  else:
    kl = jax.scipy.stats.norm.logpdf(z, mean, std).sum(-1) - prior_lib.log_prob(prior, z)
  return recon - kl, recon, kl


def log_weights_at(vae: VAE, log_px_given_z, params, x: jax.Array, z: jax.Array,
                   mean: jax.Array, std: jax.Array, prior=None) -> jax.Array:
  """log p(x, z_k) - log q(z_k | x) at given samples z [n, B, L], q = N(mean, std^2): [n, B].
  p(z) is N(0, I), or the `genjax.models.latent_prior` mixture or flow `prior`."""
  n = z.shape[0]
  log_prior = prior_lib.log_prob(prior, z)
  log_q = jax.scipy.stats.norm.logpdf(z, mean, std).sum(-1)
  out = vae.apply(params, z.reshape((-1, z.shape[-1])), method=VAE.decode)  # [n*B, H,W,P]
  x_rep = jnp.broadcast_to(x, (n,) + x.shape).reshape((-1,) + x.shape[1:])
  log_px = log_px_given_z(out, x_rep).reshape(n, -1)
  return log_px + log_prior - log_q


def log_weights(vae: VAE, log_px_given_z, params, x: jax.Array, key: jax.Array, n: int,
                prior=None) -> jax.Array:
  """log p(x, z_k) - log q(z_k | x) for n samples z_k ~ q(z|x) per image: [n, B]."""
  mean, logvar = vae.apply(params, x, method=VAE.encode)  # [B, L]
  std = jnp.exp(0.5 * logvar)
  z = mean + std * jax.random.normal(key, (n,) + mean.shape)  # [n, B, L]
  return log_weights_at(vae, log_px_given_z, params, x, z, mean, std, prior)


def dreg_gradient(vae: VAE, log_px_given_z, params, x: jax.Array, key: jax.Array, n: int,
                  prior=None, frozen: str = "") -> tuple[dict, dict]:
  """The gradient of -L_n (mean over the batch) with DReG's encoder part, and the metrics.

  Decoder: the IWAE gradient, sum_i w_i grad log w_i, w the normalised weights. Encoder:
  sum_i w_i^2 (d log w_i / d z_i) (d z_i / d phi), the path derivative with q's parameters held
  fixed inside log q. One decoder pass forward and one backward, as for IWAE: the backward
  pass with cotangent w gives the decoder's gradient and w_i d log w_i / d z_i per sample,
  which one more factor w_i turns into DReG's cotangent for z.
  """
  (mean, logvar), encoder_vjp = jax.vjp(
      lambda p: vae.apply(frozen_gradient(p, frozen), x, method=VAE.encode), params)
  std = jnp.exp(0.5 * logvar)
  eps = jax.random.normal(key, (n,) + mean.shape)  # [n, B, L]
  z = mean + std * eps
  # mean and std enter as constants: q's parameters held fixed inside log q.
  log_w, log_w_vjp = jax.vjp(
      lambda p, z: log_weights_at(vae, log_px_given_z, frozen_gradient(p, frozen), x, z, mean,
                                  std, prior), params, z)
  w = jax.lax.stop_gradient(jax.nn.softmax(log_w, axis=0))
  decoder_grads, dz = log_w_vjp(-w / x.shape[0])  # d(-mean_b L_n) / d log w = -w / B
  dz = dz * w[..., None]  # DReG: w^2 on the encoder's path
  (encoder_grads,) = encoder_vjp((dz.sum(0), (dz * 0.5 * std * eps).sum(0)))
  grads = jax.tree.map(jnp.add, decoder_grads, encoder_grads)
  loss = -jnp.mean(lik.logmeanexp(log_w, axis=0))
  return grads, {"loss": loss, "elbo": jnp.mean(log_w)}


def training_prior(config) -> prior_lib.Prior | None:
  """The p(z) a run trains against: the fitted prior file `config.latent_prior`, else None
  (N(0, I))."""
  if not config.latent_prior:
    return None
  prior, _ = prior_lib.load(config.latent_prior)
  prior_lib.check(prior, config.latent_dim)
  return prior


def _on_half(tree, half: str, fn):
  """`tree` (parameters or updates) with `fn` applied to the leaves of the VAE's `half`
  ('encoder' | 'decoder'; '' none)."""
  if not half:
    return tree
  return jax.tree_util.tree_map_with_path(
      lambda path, leaf: fn(leaf) if _in_half(path, half) else leaf, tree)


def _in_half(path, half: str) -> bool:
  return any(getattr(entry, "key", None) == half for entry in path[:2])


def frozen_gradient(params, half: str):
  """`params` with the VAE's `half` ('encoder' | 'decoder'; '' none) behind stop_gradient."""
  return _on_half(params, half, jax.lax.stop_gradient)


def frozen_updates(updates, half: str):
  """`updates` with the VAE's `half` ('encoder' | 'decoder'; '' none) zeroed."""
  return _on_half(updates, half, jnp.zeros_like)


def frozen_average(opt_state, params, half: str):
  """`opt_state` with the `half` of its parameters' moving average (where it keeps one) set to
  `params`' own. A frozen half is then sampled and scored as it is, not as an average that
  still lags it and takes in Adam's leftover momentum, which `frozen_updates` drops only after
  the average has seen it."""
  if not half:
    return opt_state
  pinned = lambda average: jax.tree_util.tree_map_with_path(
      lambda path, a, p: p if _in_half(path, half) else a, average, params)
  return ema_lib.map_average(opt_state, pinned)


def make_vae_task(config) -> Task:
  vae = get_vae(config)
  prior = training_prior(config)
  frozen = config.frozen
  tx = likelihood_optimizer(config)
  data_fn = make_data_fn(config.likelihood)
  log_px_given_z = make_log_px_given_z(config.likelihood)
  warmup_steps = config.kl_warmup_steps
  iw_train = config.iw_train_samples
  dreg = config.iw_gradient == "dreg"

  def init(key: jax.Array, batch: dict) -> ModelState:
    k_params, k_state = jax.random.split(key)
    params = vae.init(k_params, batch["image"][:1])
    return ModelState(step=jnp.zeros((), jnp.int32), key=k_state, params=params,
                    opt=tx.init(params))

  def make_step(axis_name: str | None = None):
    def mean(tree):
      return average_over(tree, axis_name)

    def iw_objective(params, x, key, beta):
      del beta  # KL annealing is an ELBO device; config validation rejects the pair.
      log_w = log_weights(vae, log_px_given_z, params, x, key, iw_train, prior)  # [k, B]
      loss = -jnp.mean(lik.logmeanexp(log_w, axis=0))  # -L_k, nats per image
      return loss, {"loss": loss, "elbo": jnp.mean(log_w)}

    def elbo_objective(params, x, key, beta):
      value, recon, kl = elbo(vae, log_px_given_z, params, x, key, prior)
      loss = -jnp.mean(value)  # nats per image: -ELBO, what is logged
      annealed = -jnp.mean(recon - beta * kl)  # = loss when beta is 1 (no or ended warm-up)
      return annealed, {"loss": loss, "recon": -jnp.mean(recon), "kl": jnp.mean(kl)}

    def step(state: ModelState, batch: dict) -> tuple[ModelState, dict]:
      k_data, k_z = jax.random.split(step_key(state, axis_name))
      x = data_fn(k_data, batch["image"])  # [B, H, W, 1]
      local_params = per_device(state.params, axis_name)
      if dreg:
        grads, metrics = dreg_gradient(vae, log_px_given_z, local_params, x, k_z, iw_train,
                                       prior, frozen)
      else:
        objective = iw_objective if iw_train > 1 else elbo_objective
        grads, metrics = jax.grad(
            lambda p, *args: objective(frozen_gradient(p, frozen), *args), has_aux=True)(
                local_params, x, k_z, kl_weight(state.step, warmup_steps))
      updates, opt = tx.update(mean(grads), state.opt, state.params)
      params = optax.apply_updates(state.params, frozen_updates(updates, frozen))
      opt = frozen_average(opt, params, frozen)
      return state.replace(step=state.step + 1, params=params, opt=opt), mean(metrics)

    return step

  decode_prior_samples = make_prior_sampler(config, prior)

  def sample(state: ModelState, key: jax.Array, num: int, labels=None) -> jax.Array:
    del labels  # Unconditional.
    return decode_prior_samples(state, key, num)

  return Task(init=init, make_step=make_step, sample=sample)


def make_prior_sampler(config, prior=None):
  """(state, key, num) -> decoded samples z ~ p(z) in [-1,1], p(z) N(0, I) or the fitted
  `prior`: the Bernoulli means (or Gaussian means), the usual way to show a binary model's
  samples without salt-and-pepper noise."""
  vae = get_vae(config)

  def decode_prior_samples(state: ModelState, key: jax.Array, num: int) -> jax.Array:
    z = prior_lib.sample(prior, key, num, config.latent_dim)
    out = vae.apply(ema_lib.sampling_params(state.params, state.opt), z, method=VAE.decode)
    unit = jax.nn.sigmoid(out) if config.likelihood == "bernoulli" else out[..., :1]
    return jnp.clip(unit, 0.0, 1.0) * 2.0 - 1.0

  return decode_prior_samples


def make_posterior(config):
  """(params, images in [-1,1], key) -> q(z | x)'s (mean, std) per image, each [B, L], x
  binarised (or scaled to [0,1]) from the key as in training."""
  vae = get_vae(config)
  data_fn = make_data_fn(config.likelihood)

  def posterior(params, images: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    mean, logvar = vae.apply(params, data_fn(key, images), method=VAE.encode)
    return mean, jnp.exp(0.5 * logvar)

  return posterior


def make_posterior_sampler(config):
  """(params, images in [-1,1], key) -> one z ~ q(z | x) per image [B, L], x binarised (or
  scaled to [0,1]) from the key as in training: draws from the aggregate posterior."""
  posterior = make_posterior(config)

  def posterior_sample(params, images: jax.Array, key: jax.Array) -> jax.Array:
    k_data, k_z = jax.random.split(key)
    mean, std = posterior(params, images, k_data)
    return mean + std * jax.random.normal(k_z, mean.shape)

  return posterior_sample


def prior_owner(state) -> dict:
  """What a fitted latent prior records of the parameters it was fitted to ('step',
  'params', 'fingerprint' of `state`'s sampling parameters); `load_latent_prior` compares
  the fingerprint."""
  return {"step": int(jax.device_get(state.step)), "params": ema_lib.params_name(state.opt),
          "fingerprint": prior_lib.fingerprint(ema_lib.sampling_params(state.params,
                                                                       state.opt))}


def model_prior(path: str, config, state) -> tuple[prior_lib.Prior | None, str]:
  """(p(z), a description for results) to evaluate or sample a run with: the fitted prior
  file `path` (checked against `state`'s parameters by `load_latent_prior`); else, or when
  `path` is the prior the run trained against, that prior (`config.latent_prior`); else
  N(0, I) (None)."""
  if path and path != config.latent_prior:
    return load_latent_prior(path, config, state)
  if config.latent_prior:
    prior = training_prior(config)
    return prior, f"{prior_lib.describe(prior)} ({config.latent_prior}, trained against)"
  return None, "standard normal"


def load_latent_prior(path: str, config, state) -> tuple[prior_lib.Prior, str]:
  """(prior, a description for results) from `experiments/fit_prior.py`'s file, checked
  against the parameters that will use it (`state`'s sampling parameters)."""
  lik.check_prior_family(config)
  prior, meta = prior_lib.load(path)
  prior_lib.check(prior, config.latent_dim)
  if meta.get("fingerprint") != prior_owner(state)["fingerprint"]:
    raise ValueError(f"{path} was fitted to other parameters (step {meta.get('step')}, "
                     f"{meta.get('params')}) than these (step {int(state.step)}): refit it "
                     "with experiments/fit_prior.py.")
  return prior, f"{prior_lib.describe(prior)} ({path})"


def make_log_likelihood(config, iw_samples: int, prior=None):
  """(state, images in [-1,1], key) -> importance-weighted log p(x) [B] in nats, k =
  `iw_samples` drawn in chunks of config.iw_chunk (the whole k if it is smaller); p(z) is
  N(0, I), or the `genjax.models.latent_prior` mixture or flow `prior` (q(z|x) stays the
  proposal)."""
  vae = get_vae(config)
  data_fn = make_data_fn(config.likelihood)
  log_px_given_z = make_log_px_given_z(config.likelihood)
  chunk = min(config.iw_chunk, iw_samples)

  def log_likelihood(state: ModelState, images: jax.Array, key: jax.Array) -> jax.Array:
    k_data, k_z = jax.random.split(key)
    x = data_fn(k_data, images)
    params = ema_lib.sampling_params(state.params, state.opt)
    return lik.iw_log_likelihood(
        lambda k, n: log_weights(vae, log_px_given_z, params, x, k, n, prior),
        k_z, iw_samples, chunk)

  return log_likelihood
