"""PixelCNN (van den Oord et al. 2016) for binary images, as pure Flax modules.

p(x) = prod_i p(x_i | x_<i) in raster order, each factor a Bernoulli whose logit the network
computes from the pixels before i. Causality comes from masked kernels: a type-A mask hides
the centre pixel and everything after it (first layer: the output at i must not see x_i);
type B keeps the centre (later layers: feature i already summarises x_<i only). With one
image channel no channel-group masking is needed.

`PixelCNN`: a 7x7 type-A conv, then gated residual blocks (masked 3x3 type-B conv to 2F
channels, tanh(a) * sigmoid(b), 1x1 conv back to F, added to the input), then two 1x1 layers
to one logit per pixel. Like the original PixelCNN this stack has a blind spot: a masked
3x3 kernel reaches one row up only one column right, and the first 7x7 layer 3 columns right
only from a row up, so pixel (r, c) never sees (r - d, c + e) for e > d + 2, however deep the
stack.

`GatedPixelCNN` (van den Oord et al. 2016, "Conditional image generation with PixelCNN
decoders") removes the blind spot with two stacks: a vertical one whose output at row r
sees every column of rows <= r within its reach, and which feeds the horizontal one only
shifted down a row (so that row r sees rows < r), and a horizontal one that sees the pixels
left of the current one in its row (the current one too after the first layer). Each layer
gates both stacks with tanh * sigmoid; the horizontal stack is residual. The same 1x1 head
turns the horizontal stack into logits.
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
MODELS = ("pixelcnn", "gated_pixelcnn")


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
  return _per_channel(mask, in_features, out_features)


def _per_channel(taps: np.ndarray, in_features: int, out_features: int) -> np.ndarray:
  """A [kh, kw] 0/1 tap mask as the [kh, kw, in, out] mask of a kernel."""
  return np.broadcast_to(taps[:, :, None, None], taps.shape + (in_features, out_features)).copy()


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
    return x + Conv(self.features, (1, 1), dtype=self.dtype)(gate(h))


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
    return logit_head(h, self.head_features, self.dtype)


def logit_head(h: jax.Array, head_features: int, dtype: Any) -> jax.Array:
  """relu -> 1x1 conv to `head_features` -> relu -> 1x1 conv to one fp32 logit per pixel
  (called inside a compact module, whose submodules these convs become)."""
  h = nn.relu(Conv(head_features, (1, 1), dtype=dtype)(nn.relu(h)))
  return Conv(1, (1, 1), dtype=dtype)(h).astype(jnp.float32)


def vertical_mask(kernel_size: int, in_features: int, out_features: int) -> np.ndarray:
  """The [k, k, in, out] mask of the vertical stack: every column of the rows up to and
  including the centre row."""
  c = kernel_size // 2
  mask = np.zeros((kernel_size, kernel_size), np.float32)
  mask[:c + 1] = 1.0
  return _per_channel(mask, in_features, out_features)


def horizontal_mask(kernel_size: int, mask_type: str, in_features: int,
                    out_features: int) -> np.ndarray:
  """The [1, k, in, out] mask of the horizontal stack: the centre row of `causal_mask`, i.e.
  the pixels left of the centre, and the centre itself for type B."""
  c = kernel_size // 2
  return causal_mask(kernel_size, mask_type, in_features, out_features)[c:c + 1]


def shift_down(x: jax.Array) -> jax.Array:
  """[B, H, W, C] moved down one row, zeros in the top row: row r then holds row r - 1."""
  return jnp.pad(x[:, :-1], ((0, 0), (1, 0), (0, 0), (0, 0)))


def gate(x: jax.Array) -> jax.Array:
  """tanh(a) * sigmoid(b) of the two halves (a, b) of the channels."""
  a, b = jnp.split(x, 2, axis=-1)
  return jnp.tanh(a) * jax.nn.sigmoid(b)


class GatedStackLayer(nn.Module):
  """One layer of the two stacks: (v, h) -> (gate(conv_v(v)),
  h + conv1x1(gate(conv_h(h) + conv1x1(shift_down(conv_v(v)))))); the first layer uses a
  type-A horizontal mask and no residual (its h is the image itself)."""
  features: int
  kernel_size: int = 3
  first: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, v: jax.Array, h: jax.Array) -> tuple[jax.Array, jax.Array]:
    k, width = self.kernel_size, 2 * self.features
    v_pre = Conv(width, (k, k), mask=vertical_mask(k, v.shape[-1], width),
                 dtype=self.dtype)(v)
    h_mask = horizontal_mask(k, "A" if self.first else "B", h.shape[-1], width)
    h_pre = Conv(width, (1, k), mask=h_mask, dtype=self.dtype)(h)
    h_pre = h_pre + Conv(width, (1, 1), dtype=self.dtype)(shift_down(v_pre))
    h_out = Conv(self.features, (1, 1), dtype=self.dtype)(gate(h_pre))
    return gate(v_pre), h_out if self.first else h + h_out


class GatedPixelCNN(nn.Module):
  """binary images [B,H,W,1] in {0,1} -> logits [B,H,W,1] of p(x_i = 1 | x_<i), with no
  blind spot: a first 7-wide layer, then `num_layers - 1` 3-wide ones, then the 1x1 head."""
  features: int = 64
  num_layers: int = 8
  head_features: int = 256
  image_shape: tuple[int, int, int] = IMAGE_SHAPE
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    check_input(x, tuple(self.image_shape), type(self).__name__)
    if self.num_layers < 1:
      raise ValueError(f"GatedPixelCNN needs num_layers >= 1, got {self.num_layers}.")
    v = h = 2.0 * x - 1.0  # centre {0,1} at 0
    for i in range(self.num_layers):
      v, h = GatedStackLayer(self.features, 7 if i == 0 else 3, i == 0, self.dtype)(v, h)
    return logit_head(h, self.head_features, self.dtype)


def get_pixelcnn(config) -> PixelCNN | GatedPixelCNN:
  """The autoregressive model of `config`: 'pixelcnn' (sizes `features`, `num_blocks`,
  `head_features` from `config.model_args`) or 'gated_pixelcnn' (`features`, `num_layers`,
  `head_features`)."""
  from genjax.models import compute_dtype  # pylint: disable=import-outside-toplevel

  args, dtype = config.model_args, compute_dtype(config.compute_dtype)
  features, head = int(args.get("features", 64)), int(args.get("head_features", 256))
  if config.model == "pixelcnn":
    return PixelCNN(features=features, num_blocks=int(args.get("num_blocks", 6)),
                    head_features=head, dtype=dtype)
  if config.model == "gated_pixelcnn":
    return GatedPixelCNN(features=features, num_layers=int(args.get("num_layers", 8)),
                         head_features=head, dtype=dtype)
  raise ValueError(f"Unknown PixelCNN model {config.model!r}; known: {list(MODELS)}.")
