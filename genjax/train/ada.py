"""Adaptive discriminator augmentation (Karras et al. 2020), as a pure init/update pair.

`augment(images, key, p)` applies each of a few augmentations to each image independently
with probability p (the x-flip, drawn as ADA's, mirrors with probability p/2). Every operation
is differentiable in the pixels (flips, translations and cutout are gathers and masks;
brightness and contrast are affine), so G's gradient flows through the augmented fakes: ADA
augments everything D sees, real and fake, in both the D and the G update, which keeps the
augmentations from leaking into G's samples for p < ~0.8.

Five of ADA's operations, with the magnitudes of its code (stylegan2-ada-pytorch,
`training/augment.py`): x-flip, integer translation (1/8 of the side), brightness (std 0.2),
contrast (log2 std 0.5) and cutout (about half the side). Two differ from it: contrast scales around
each image's mean (there: around 0) and cutout fills with the background -1 (there: 0).

`p` is steered by the overfitting signal r_t = E[sign D(real)]: 0 when D cannot tell,
1 when it is sure of every real image. Every `interval` steps, p moves by
sign(r_t - target) * (images seen in the interval) / (kimg * 1000), clipped to [0, 1].
The state lives in the train state; `update` is pure and jit/scan friendly.
"""
from __future__ import annotations

from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

# ADA's magnitudes (stylegan2-ada-pytorch training/augment.py), all on images in [-1, 1]:
MAX_SHIFT = 1 / 8       # Integer translation range, a fraction of the image side (xint_max).
BRIGHTNESS_STD = 0.2    # Added offset's std (brightness_std).
CONTRAST_STD = 0.5      # Std of log2 of the contrast factor (contrast_std).


@flax.struct.dataclass
class AdaState:
  p: jax.Array          # f32 [] augmentation probability
  sign_sum: jax.Array   # f32 [] sum of sign D(real) over the current interval
  count: jax.Array      # f32 [] images counted in the current interval
  steps: jax.Array      # int32 [] steps in the current interval


class Ada(NamedTuple):
  init: callable
  update: callable


def ada(target: float = 0.6, interval: int = 4, kimg: float = 100.0,
        p_init: float = 0.0) -> Ada:
  """The controller. `update(real_logits, state, *, reduce=identity) -> (state, r_t)`;
  `reduce` sums over devices when the step runs per device."""

  def init() -> AdaState:
    # Distinct buffers: the epoch donates the state, and one buffer twice is an error.
    return AdaState(p=jnp.full((), p_init, jnp.float32), sign_sum=jnp.zeros((), jnp.float32),
                    count=jnp.zeros((), jnp.float32), steps=jnp.zeros((), jnp.int32))

  def update(real_logits: jax.Array, state: AdaState, *, reduce=lambda t: t
             ) -> tuple[AdaState, jax.Array]:
    signs = reduce(jnp.stack([jnp.sum(jnp.sign(real_logits)),
                              jnp.asarray(real_logits.shape[0], jnp.float32)]))
    sign_sum, count = state.sign_sum + signs[0], state.count + signs[1]
    steps = state.steps + 1
    r_t = sign_sum / count
    adjust = steps >= interval
    p = jnp.clip(state.p + jnp.sign(r_t - target) * count / (kimg * 1000.0), 0.0, 1.0)
    zero = jnp.zeros((), jnp.float32)
    new = AdaState(p=jnp.where(adjust, p, state.p),
                   sign_sum=jnp.where(adjust, zero, sign_sum),
                   count=jnp.where(adjust, zero, count),
                   steps=jnp.where(adjust, 0, steps))
    return new, r_t

  return Ada(init, update)


def _translate(x: jax.Array, dy: jax.Array, dx: jax.Array, pad: int) -> jax.Array:
  """One image [H, W, C] shifted by integer (dy, dx) with reflection padding."""
  h, w, _ = x.shape
  padded = jnp.pad(x, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
  return jax.lax.dynamic_slice(padded, (pad - dy, pad - dx, 0), (h, w, x.shape[2]))


def xflip(images: jax.Array, key: jax.Array, p: jax.Array) -> jax.Array:
  """images [B, H, W, C], each mirrored left-right with probability p/2: as ADA's xflip, with
  probability p a fair coin picks the orientation. So for p < 1 an image stays more often in
  its own orientation than in the mirrored one, and the flip does not leak into G."""
  k_on, k_coin = jax.random.split(key)
  shape = (images.shape[0], 1, 1, 1)
  flip = (jax.random.uniform(k_on, shape) < p) & (jax.random.uniform(k_coin, shape) < 0.5)
  return jnp.where(flip, images[:, :, ::-1], images)


def augment(images: jax.Array, key: jax.Array, p: jax.Array) -> jax.Array:
  """images [B, H, W, C] in [-1, 1] -> augmented [B, H, W, C]; each op with prob p."""
  b, h, w, _ = images.shape
  keys = jax.random.split(key, 10)
  on = lambda k: jax.random.uniform(k, (b, 1, 1, 1)) < p   # [B,1,1,1] per-op coin
  x = images
  x = xflip(x, keys[0], p)
  # Integer translation, reflection-padded.
  pad = max(1, int(round(MAX_SHIFT * h)))
  shift = jax.random.randint(keys[1], (b, 2), -pad, pad + 1)
  moved = jax.vmap(_translate, in_axes=(0, 0, 0, None))(x, shift[:, 0], shift[:, 1], pad)
  x = jnp.where(on(keys[2]), moved, x)
  # Brightness: add N(0, 0.2^2); ADA applies it to images already in [-1, 1].
  offset = BRIGHTNESS_STD * jax.random.normal(keys[4], (b, 1, 1, 1))
  x = jnp.where(on(keys[3]), x + offset, x)
  # Contrast: scale around the image mean by 2^N(0, 0.5^2).
  scale = jnp.exp2(CONTRAST_STD * jax.random.normal(keys[5], (b, 1, 1, 1)))
  mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  x = jnp.where(on(keys[6]), (x - mean) * scale + mean, x)
  # Cutout: a half-size square at a random centre set to the background (-1).
  cy = jax.random.randint(keys[7], (b, 1, 1, 1), 0, h)
  cx = jax.random.randint(keys[8], (b, 1, 1, 1), 0, w)
  yy, xx = jnp.arange(h)[None, :, None, None], jnp.arange(w)[None, None, :, None]
  hole = (jnp.abs(yy - cy) < h // 4) & (jnp.abs(xx - cx) < w // 4)
  x = jnp.where(on(keys[9]) & hole, -1.0, x)
  return x
