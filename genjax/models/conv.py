"""Convolutions that are fast on XLA:CPU: drop-ins for `nn.Conv` and `nn.ConvTranspose`.

XLA:CPU runs convolution gradients (of strided and of transposed convolutions) through a
slow generic path: in DCGAN's training step they took 98 % of the time (genjax.bench
profile, experiments/RESULTS.md). `ConvTranspose` here computes the same
function as col2im -- one matmul of every input pixel with the whole kernel, then each of
the kh*kw kernel taps placed at its strided output offset by `lax.pad` and summed -- so the
forward and both gradients are matmuls, pads and strided slices, with none of the dilated
input's zeros multiplied. Parameters (`kernel` [kh, kw, in, out], `bias` [out]), their
initialisation and the result equal `flax.linen.ConvTranspose` with `transpose_kernel=False`
(tested to float rounding), so checkpoints do not depend on the implementation.
`Conv` likewise computes a 'SAME' convolution as im2col (kh*kw strided slices, one matmul).
`impl='auto'` uses col2im / im2col on CPU and XLA's own convolutions elsewhere (cuDNN and
TPU convolutions are fast).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from genjax.models.mixed_dot import mixed_matmul

IMPLS = ("auto", "xla", "matmul")


def _use_matmul(impl: str) -> bool:
  if impl not in IMPLS:
    raise ValueError(f"convolution impl={impl!r}; use one of {IMPLS}.")
  return impl == "matmul" or (impl == "auto" and jax.default_backend() == "cpu")


def _conv_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """lax.conv_general_dilated's 'SAME' padding: output ceil(size / stride)."""
  total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def _all_taps(kh: int, kw: int) -> list[tuple[int, int]]:
  """Every kernel tap (ty, tx), in the kernel's own row-major order."""
  return [(ty, tx) for ty in range(kh) for tx in range(kw)]


def live_taps(mask: Any, kh: int, kw: int) -> list[tuple[int, int]]:
  """The kernel taps (ty, tx) that a [kh, kw, ...] mask leaves any non-zero entry in: all of
  them without a mask or with a traced one (its values are unknown while tracing)."""
  every = _all_taps(kh, kw)
  if mask is None:
    return every
  try:
    per_tap = np.asarray(mask).reshape(kh, kw, -1)
  except jax.errors.TracerArrayConversionError:
    return every
  return [(ty, tx) for ty, tx in every if per_tap[ty, tx].any()]


def conv_im2col(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
                taps: Sequence[tuple[int, int]] | None = None) -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, strides, 'SAME', ('NHWC', 'HWIO', 'NHWC'))` by
  im2col: x [B, H, W, C], kernel [kh, kw, C, O] -> [B, ceil(H/sy), ceil(W/sx), O].

  `taps` (default: all) names the kernel taps to compute; leaving out taps whose kernel
  entries are zero (a causal mask's, see `live_taps`) gives the same result with that much
  less copying and multiplying: PixelCNN's 3x3 type-B mask keeps 5 of 9 taps."""
  b, h, w, _ = x.shape
  kh, kw, c, o = kernel.shape
  every = _all_taps(kh, kw)
  taps = every if taps is None else list(taps)
  sy, sx = strides
  (py, px) = _conv_same_padding(h, kh, sy), _conv_same_padding(w, kw, sx)
  x = jnp.pad(x, ((0, 0), py, px, (0, 0)))
  out_h, out_w = -(-h // sy), -(-w // sx)
  if not taps:
    return jnp.zeros((b, out_h, out_w, o), x.dtype)
  views = [x[:, ty:ty + (out_h - 1) * sy + 1:sy, tx:tx + (out_w - 1) * sx + 1:sx, :]
           for ty, tx in taps]                      # each [B, out_h, out_w, C]
  patches = jnp.concatenate(views, -1)              # [B, out_h, out_w, len(taps)*C]
  if taps == every:
    weights = kernel.reshape(-1, o)  # the kernel's own (ty, tx, c) layout
  else:
    weights = jnp.stack([kernel[ty, tx] for ty, tx in taps]).reshape(len(taps) * c, o)
  return mixed_matmul(patches, weights).astype(x.dtype)


def _transpose_same_padding(kernel: int, stride: int) -> tuple[int, int]:
  """lax.conv_transpose's 'SAME' padding of the dilated input (its `_conv_transpose_padding`)."""
  pad_len = kernel + stride - 2
  lo = kernel - 1 if stride > kernel - 1 else -(-pad_len // 2)
  return lo, pad_len - lo


def conv_transpose_col2im(x: jax.Array, kernel: jax.Array, strides: Sequence[int]
                          ) -> jax.Array:
  """`lax.conv_transpose(x, kernel, strides, 'SAME', ('NHWC', 'HWIO', 'NHWC'))` by col2im.

  x [B, H, W, C], kernel [kh, kw, C, O] -> [B, H*sy, W*sx, O]. The correlation over the
  dilated input adds x[i] @ kernel[k] to output row i*s + lo - k; with the taps flipped,
  tap t = kh-1-k lands at i*s + (lo - kh + 1) + t."""
  b, h, w, _ = x.shape
  kh, kw, _, o = kernel.shape
  (sy, sx), out_h, out_w = strides, h * strides[0], w * strides[1]
  taps = jnp.transpose(kernel[::-1, ::-1], (2, 0, 1, 3)).reshape(x.shape[-1], -1)  # [C, kh*kw*O]
  cols = mixed_matmul(x, taps).reshape((b, h, w, kh, kw, o))  # [B, H, W, kh, kw, O]
  off_y = _transpose_same_padding(kh, sy)[0] - kh + 1
  off_x = _transpose_same_padding(kw, sx)[0] - kw + 1
  zero = jnp.zeros((), cols.dtype)
  out = jnp.zeros((b, out_h, out_w, o), cols.dtype)
  for ty in range(kh):
    for tx in range(kw):
      lo_y, lo_x = off_y + ty, off_x + tx
      hi_y, hi_x = out_h - lo_y - (h - 1) * sy - 1, out_w - lo_x - (w - 1) * sx - 1
      out = out + lax.pad(cols[:, :, :, ty, tx, :], zero,
                          ((0, 0, 0), (lo_y, hi_y, sy - 1), (lo_x, hi_x, sx - 1), (0, 0, 0)))
  return out.astype(x.dtype)


def _kernel_and_bias(module: nn.Module, x: jax.Array, mask=None):
  """flax's Conv/ConvTranspose parameters (fp32 `kernel` [kh, kw, in, out], lecun-normal;
  `bias` [out], zeros), the kernel masked, all cast to the module's compute dtype."""
  kernel = module.param("kernel", nn.initializers.lecun_normal(),
                        tuple(module.kernel_size) + (x.shape[-1], module.features), jnp.float32)
  bias = module.param("bias", nn.initializers.zeros_init(), (module.features,), jnp.float32)
  if mask is not None:
    kernel = kernel * mask
  return nn.dtypes.promote_dtype(x, kernel, bias, dtype=module.dtype)


class Conv(nn.Module):
  """`nn.Conv(features, kernel_size, strides, padding='SAME', mask=mask)` with a choice of
  implementation (see the module docstring); same parameters and result. `mask`
  [kh, kw, in, out] multiplies the kernel (PixelCNN's causal masks); given as a concrete
  (numpy) array, the matmul form also skips the taps it zeroes entirely (`live_taps`)."""
  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  mask: Any = None
  impl: str = "auto"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x, kernel, bias = _kernel_and_bias(self, x, self.mask)
    if _use_matmul(self.impl):
      y = conv_im2col(x, kernel, self.strides,
                      live_taps(self.mask, *self.kernel_size))
    else:
      y = lax.conv_general_dilated(x, kernel, self.strides, "SAME",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias


class ConvTranspose(nn.Module):
  """`nn.ConvTranspose(features, kernel_size, strides, padding='SAME')` with a choice of
  implementation (see the module docstring); same parameters and result."""
  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int]
  impl: str = "auto"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x, kernel, bias = _kernel_and_bias(self, x)
    if _use_matmul(self.impl):
      y = conv_transpose_col2im(x, kernel, self.strides)
    else:
      y = lax.conv_transpose(x, kernel, self.strides, "SAME",
                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias
