"""PixelCNN as a `Task`: one pure NLL step on dynamically binarised batches, exact
log-likelihoods, and ancestral sampling as one jitted `lax.fori_loop` over the pixels."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from genjax.eval import likelihood as lik
from genjax.models.pixelcnn import GatedPixelCNN, PixelCNN, get_pixelcnn
from genjax.train import ema as ema_lib
from genjax.train.task import ModelState, Task, average_over, likelihood_optimizer, per_device
from genjax.train.vae import step_key


def log_prob(model: PixelCNN | GatedPixelCNN, params, x: jax.Array) -> jax.Array:
  """Exact log p(x) in nats of binary images x [B,H,W,1]: [B]."""
  return lik.bernoulli_log_prob(model.apply(params, x), x)


def sample_pixels(model: PixelCNN | GatedPixelCNN, params, key: jax.Array, num: int) -> jax.Array:
  """Ancestral sampling in raster order: num binary images [num,H,W,1] in {0,1}. Each of the
  H*W iterations reruns the network on the partial image and draws pixel i; causality of
  the masks makes the not-yet-drawn zeros irrelevant."""
  h, w, c = model.image_shape
  uniforms = jax.random.uniform(key, (h * w, num))  # one draw per pixel, made up front

  def body(i, x):
    row, col = i // w, i % w
    logits = model.apply(params, x)[:, row, col, 0]  # [num]
    bit = (uniforms[i] < jax.nn.sigmoid(logits)).astype(x.dtype)
    return x.at[:, row, col, 0].set(bit)

  return jax.lax.fori_loop(0, h * w, body, jnp.zeros((num, h, w, c), jnp.float32))


def make_pixelcnn_task(config) -> Task:
  model = get_pixelcnn(config)
  tx = likelihood_optimizer(config)
  num_dims = model.image_shape[0] * model.image_shape[1] * model.image_shape[2]

  def init(key: jax.Array, batch: dict) -> ModelState:
    k_params, k_state = jax.random.split(key)
    params = model.init(k_params, jnp.zeros_like(batch["image"][:1]))
    return ModelState(step=jnp.zeros((), jnp.int32), key=k_state, params=params,
                         opt=tx.init(params))

  def make_step(axis_name: str | None = None):
    def mean(tree):
      return average_over(tree, axis_name)


    def objective(params, x):
      nll = -jnp.mean(log_prob(model, params, x))  # nats per image
      return nll, {"nll_loss": nll, "bits_per_dim": lik.nats_to_bits_per_dim(nll, num_dims)}

    def step(state: ModelState, batch: dict) -> tuple[ModelState, dict]:
      x = lik.binarize(step_key(state, axis_name), batch["image"])  # [B, H, W, 1]
      grads, metrics = jax.grad(objective, has_aux=True)(
          per_device(state.params, axis_name), x)
      updates, opt = tx.update(mean(grads), state.opt, state.params)
      params = optax.apply_updates(state.params, updates)
      return state.replace(step=state.step + 1, params=params, opt=opt), mean(metrics)

    return step

  def sample(state: ModelState, key: jax.Array, num: int, labels=None) -> jax.Array:
    del labels  # Unconditional.
    params = ema_lib.sampling_params(state.params, state.opt)
    return sample_pixels(model, params, key, num) * 2.0 - 1.0

  return Task(init=init, make_step=make_step, sample=sample)


def make_log_likelihood(config):
  """(state, images in [-1,1], key) -> exact log p(x) [B] in nats of the binarisation of the
  images drawn with `key`."""
  model = get_pixelcnn(config)

  def log_likelihood(state: ModelState, images: jax.Array, key: jax.Array) -> jax.Array:
    params = ema_lib.sampling_params(state.params, state.opt)
    return log_prob(model, params, lik.binarize(key, images))

  return log_likelihood
