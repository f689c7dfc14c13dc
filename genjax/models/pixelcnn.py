"""PixelCNN (van den Oord et al. 2016) for binary images, as pure Flax modules.

p(x) = prod_i p(x_i | x_<i) in raster order, each factor a Bernoulli whose logit the network
computes from the pixels before i. Causality comes from masked kernels: a type-A mask hides
the centre pixel and everything after it (first layer: the output at i must not see x_i);
type B keeps the centre (later layers: feature i already summarises x_<i only). With one
image channel no channel-group masking is needed.

Body: a 7x7 type-A conv, then gated residual blocks (masked 3x3 type-B conv to 2F channels,
tanh(a) * sigmoid(b), 1x1 conv back to F, added to the input), then two 1x1 layers to one
logit per pixel. Like the original PixelCNN this stack has a blind spot above-right of each
pixel; the gated vertical/horizontal stacks that remove it are not used here.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax.models.conv import Conv
from genjax.models.mlp_gan import check_input

IMAGE_SHAPE = (28, 28, 1)
MASK_TYPES = ("A", "B")


def causal_mask(kernel_size: int, mask_type: str, in_features: int,
                out_features: int) -> np.ndarray:
  """The [k, k, in, out] 0/1 mask of a raster-order causal conv: rows below the centre and
  pixels right of it are hidden; type A also hides the centre."""
  if mask_type not in MASK_TYPES:
    raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}.")
  if kernel_size < 1 or kernel_size % 2 == 0:
    raise ValueError(f"A causal mask needs an odd kernel size, got {kernel_size}.")
  c = kernel_size // 2
  mask = np.ones((kernel_size, kernel_size), np.float32)
  mask[c, c + (mask_type == "B"):] = 0.0
  mask[c + 1:, :] = 0.0
  return np.broadcast_to(mask[:, :, None, None],
                         (kernel_size, kernel_size, in_features, out_features)).copy()


class MaskedConv(nn.Module):
  """A SAME-padded conv whose kernel is multiplied by a causal mask (flax's `Conv.mask`)."""
  features: int
  kernel_size: int
  mask_type: str
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    mask = causal_mask(self.kernel_size, self.mask_type, x.shape[-1], self.features)
    return Conv(self.features, (self.kernel_size, self.kernel_size), mask=mask,
                dtype=self.dtype)(x)  # 'SAME', stride 1


class GatedResidualBlock(nn.Module):
  """x [B,H,W,F] -> x + conv1x1(tanh(a) * sigmoid(b)), (a, b) = masked 3x3 conv B of x."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = MaskedConv(2 * self.features, 3, "B", self.dtype)(x)
    a, b = jnp.split(h, 2, axis=-1)
    gated = jnp.tanh(a) * jax.nn.sigmoid(b)
    return x + Conv(self.features, (1, 1), dtype=self.dtype)(gated)


class PixelCNN(nn.Module):
  """binary images [B,H,W,1] in {0,1} -> logits [B,H,W,1] of p(x_i = 1 | x_<i)."""
  features: int = 64
  num_blocks: int = 6
  head_features: int = 256
  image_shape: tuple[int, int, int] = IMAGE_SHAPE
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    check_input(x, tuple(self.image_shape), type(self).__name__)
    h = MaskedConv(self.features, 7, "A", self.dtype)(2.0 * x - 1.0)  # centre {0,1} at 0
    for _ in range(self.num_blocks):
      h = GatedResidualBlock(self.features, self.dtype)(h)
    h = nn.relu(Conv(self.head_features, (1, 1), dtype=self.dtype)(nn.relu(h)))
    return Conv(1, (1, 1), dtype=self.dtype)(h).astype(jnp.float32)


def get_pixelcnn(config) -> PixelCNN:
  """The PixelCNN of `config`; sizes from `config.model_args` (features, num_blocks,
  head_features)."""
  from genjax.models import compute_dtype  # pylint: disable=import-outside-toplevel

  if config.model != "pixelcnn":
    raise ValueError(f"Unknown PixelCNN model {config.model!r}; known: ['pixelcnn'].")
  args = config.model_args
  return PixelCNN(features=int(args.get("features", 64)),
                  num_blocks=int(args.get("num_blocks", 6)),
                  head_features=int(args.get("head_features", 256)),
                  dtype=compute_dtype(config.compute_dtype))
