"""Convolutions that are fast on XLA:CPU: drop-ins for `nn.Conv` and `nn.ConvTranspose`.

XLA:CPU runs convolution gradients (of strided and of transposed convolutions) through a
slow generic path: in DCGAN's training step they took 98 % of the time (genjax.bench
profile, experiments/RESULTS.md). The forms here compute the same functions with matmuls,
pads, strided slices and reshapes only, so that both gradients are those ops too:
`ConvTranspose` multiplies every input pixel with every tap of the kernel, then assembles
the output phase by phase (`conv_transpose_phases`; none of the dilated input's zeros is
multiplied); `Conv` is a 'SAME' convolution as im2col (kh*kw strided slices, one matmul),
or, when it narrows the channels, the product first and the taps' slices summed after
(`conv_product_first`). Parameters (`kernel` [kh, kw, in, out], `bias` [out]), their
initialisation and the result equal flax's `nn.Conv` / `nn.ConvTranspose` (with
`transpose_kernel=False`; tested to float rounding), so checkpoints do not depend on the
implementation. `impl='auto'` uses these forms on CPU and XLA's own convolutions elsewhere
(cuDNN and TPU convolutions are fast).

bf16 compute (`dtype=jnp.bfloat16`; parameters stay fp32) keeps the parameters' gradients
fp32 as `mixed_dot.Dense` does. The matmul forms take the fp32 kernel: `mixed_matmul` casts it
to bf16 inside the product (bf16 x bf16 -> fp32) and returns its gradient unrounded, in fp32.
The bias is added in fp32 to the fp32 product, and only the sum is cast to the bf16 output: its
value is not rounded before the add, nor its gradient (a sum over batch and positions) after.
XLA's form (`impl='xla'`) casts the kernel to bf16 and convolves in bf16 as flax does, then
adds the fp32 bias to the result in fp32: the bias's gradient is fp32 too; the kernel's leaves
a bf16 convolution and the cast, rounded to bf16 (~2e-3 relative) where that convolution runs
in bf16 (XLA:CPU runs it in fp32 and, excess precision allowed, skips the rounding). lax's
`preferred_element_type=float32` would not change that and would make both gradient
convolutions fp32 x fp32 (its transpose rules cast the bf16 operand to the fp32 cotangent's
dtype); only a custom VJP would keep them bf16. Other compute dtypes are as in flax.
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


def _view(a: jax.Array, ty: int, tx: int, strides: Sequence[int], out_hw: Sequence[int]
          ) -> jax.Array:
  """a[:, ty::sy, tx::sx, :] cut to out_hw: what kernel tap (ty, tx) sees of a padded map."""
  (sy, sx), (out_h, out_w) = strides, out_hw
  return a[:, ty:ty + (out_h - 1) * sy + 1:sy, tx:tx + (out_w - 1) * sx + 1:sx, :]


def _tap_columns(kernel: jax.Array, taps: Sequence[tuple[int, int]]) -> jax.Array:
  """The taps' [C, O] slices of a [kh, kw, C, O] kernel side by side: [C, len(taps) * O]."""
  return jnp.concatenate([kernel[ty, tx] for ty, tx in taps], axis=1)


def conv_im2col(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
                taps: Sequence[tuple[int, int]] | None = None, out_dtype: Any = None
                ) -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, strides, 'SAME', ('NHWC', 'HWIO', 'NHWC'))` by
  im2col: x [B, H, W, C], kernel [kh, kw, C, O] -> [B, ceil(H/sy), ceil(W/sx), O].

  The result is in `out_dtype`, x's by default; for a bf16 x, float32 leaves `mixed_matmul`'s
  fp32 sum unrounded (the kernel may be fp32 then: it is cast inside the product).

  `taps` (default: all) names the kernel taps to compute; leaving out taps whose kernel
  entries are zero (a causal mask's, see `live_taps`) gives the same result with that much
  less copying and multiplying: PixelCNN's 3x3 type-B mask keeps 5 of 9 taps."""
  b, h, w, _ = x.shape
  kh, kw, c, o = kernel.shape
  every = _all_taps(kh, kw)
  taps = every if taps is None else list(taps)
  sy, sx = strides
  x = jnp.pad(x, ((0, 0), _conv_same_padding(h, kh, sy), _conv_same_padding(w, kw, sx),
                  (0, 0)))
  out_hw = (-(-h // sy), -(-w // sx))
  out_dtype = x.dtype if out_dtype is None else out_dtype
  if not taps:
    return jnp.zeros((b, *out_hw, o), out_dtype)
  patches = jnp.concatenate([_view(x, ty, tx, strides, out_hw) for ty, tx in taps], -1)
  if taps == every:
    weights = kernel.reshape(-1, o)  # the kernel's own (ty, tx, c) layout
  else:
    weights = jnp.stack([kernel[ty, tx] for ty, tx in taps]).reshape(len(taps) * c, o)
  return mixed_matmul(patches, weights).astype(out_dtype)


def conv_product_first(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
                       taps: Sequence[tuple[int, int]] | None = None, out_dtype: Any = None
                       ) -> jax.Array:
  """The same convolution as `conv_im2col`, the product first: every input pixel times all
  taps' [C, O] kernels at once (one matmul to [B, H, W, taps * O]), then each tap's O
  channels read at its strided offset and summed. Result in `out_dtype` (as `conv_im2col`).

  im2col copies taps * C numbers per output pixel, this form computes taps * O per input
  pixel: it is the cheaper one when the convolution narrows, O * sy * sx < C (a decoder's
  3x3 32 -> 1 output layer: 1.1 against 47 ms forward, 4.9 against 56 ms with gradients at
  batch 100 on a 2-core Xeon, fp32), and its gradients are again slices, pads and matmuls."""
  b, h, w, _ = x.shape
  kh, kw, _, o = kernel.shape
  taps = _all_taps(kh, kw) if taps is None else list(taps)
  sy, sx = strides
  out_hw = (-(-h // sy), -(-w // sx))
  out_dtype = x.dtype if out_dtype is None else out_dtype
  if not taps:
    return jnp.zeros((b, *out_hw, o), out_dtype)
  z = mixed_matmul(x, _tap_columns(kernel, taps))  # [B, H, W, taps * O]
  z = jnp.pad(z, ((0, 0), _conv_same_padding(h, kh, sy), _conv_same_padding(w, kw, sx),
                  (0, 0)))
  parts = jnp.split(z, len(taps), axis=-1)
  y = sum(_view(part, ty, tx, strides, out_hw) for part, (ty, tx) in zip(parts, taps, strict=True))
  return y.astype(out_dtype)


def _transpose_same_padding(kernel: int, stride: int) -> tuple[int, int]:
  """lax.conv_transpose's 'SAME' padding of the dilated input (its `_conv_transpose_padding`)."""
  pad_len = kernel + stride - 2
  lo = kernel - 1 if stride > kernel - 1 else -(-pad_len // 2)
  return lo, pad_len - lo


def _phases_and_shifts(kernel: int, stride: int) -> list[tuple[int, int]]:
  """For each tap t of the flipped kernel along one axis, (p, d): the tap carries input pixel i
  to output pixel stride * (i + d) + p, i.e. into output phase p, shifted by d."""
  off = _transpose_same_padding(kernel, stride)[0] - kernel + 1
  return [((off + t) % stride, (off + t) // stride) for t in range(kernel)]


def _shift(v: jax.Array, dy: int, dx: int) -> jax.Array:
  """out[:, m, n] = v[:, m - dy, n - dx] (zero outside v); same shape as v."""
  zero = jnp.zeros((), v.dtype)
  return lax.pad(v, zero, ((0, 0, 0), (dy, -dy, 0), (dx, -dx, 0), (0, 0, 0)))


def conv_transpose_phases(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
                          out_dtype: Any = None) -> jax.Array:
  """`lax.conv_transpose(x, kernel, strides, 'SAME', ('NHWC', 'HWIO', 'NHWC'))` without the
  dilated input's zeros. x [B, H, W, C], kernel [kh, kw, C, O] -> [B, H*sy, W*sx, O].

  One matmul gives every input pixel times every tap of the flipped kernel ([B, H, W,
  kh*kw*O]). Output pixel (sy*m + p, sx*n + q) -- phase (p, q) -- receives from each tap of
  that phase its product at input pixel (m, n) shifted by the tap's offset: each phase is a
  sum of shifted [B, H, W, O] slices, and the sy*sx phases interleave into the output by a
  reshape (depth-to-space). Forward and gradients are matmuls, pads, slices and a transpose;
  placing each tap with an interior-padded `lax.pad` instead (col2im) gave the same forward
  time but a 3-5x slower gradient on XLA:CPU (35 against 6.7 ms for a 64 -> 64 stride-2 3x3
  layer at batch 100, fp32, 2-core Xeon). Result in `out_dtype` (as `conv_im2col`)."""
  b, h, w, _ = x.shape
  kh, kw, _, o = kernel.shape
  sy, sx = strides
  flipped = kernel[::-1, ::-1]
  taps = _all_taps(kh, kw)
  parts = jnp.split(mixed_matmul(x, _tap_columns(flipped, taps)), len(taps), axis=-1)
  along_y, along_x = _phases_and_shifts(kh, sy), _phases_and_shifts(kw, sx)
  phases: dict[tuple[int, int], jax.Array] = {}
  for part, (ty, tx) in zip(parts, taps, strict=True):
    (py, dy), (px, dx) = along_y[ty], along_x[tx]
    moved = _shift(part, dy, dx)
    phases[py, px] = phases[py, px] + moved if (py, px) in phases else moved
  empty = jnp.zeros((b, h, w, o), parts[0].dtype)  # a phase no tap reaches (kernel < stride)
  out = jnp.stack([jnp.stack([phases.get((py, px), empty) for px in range(sx)], axis=3)
                   for py in range(sy)], axis=2)  # [B, H, sy, W, sx, O]
  out_dtype = x.dtype if out_dtype is None else out_dtype
  return out.reshape((b, h * sy, w * sx, o)).astype(out_dtype)


def _drawn_as_matrix(init):
  """`init` for a [..., in, out] kernel, drawn as the [prod(...) * in, out] matrix and
  reshaped: the same values (JAX's random bits follow the flat index, under each PRNG of
  config.PRNG_IMPLS, tests/test_conv.py; lecun-normal's fan-in is the same product), but
  XLA:CPU takes seconds to compile a rank-4 draw of a small kernel (jax 0.10.2, AMD EPYC:
  5 s for [3, 3, 4, 8], 0.5 s for [36, 8]), paid by every conv model's init."""
  def draw(key, shape, dtype=jnp.float32):
    return init(key, (int(np.prod(shape[:-1])), shape[-1]), dtype).reshape(shape)
  return draw


def _kernel_and_bias(module: nn.Module, x: jax.Array, matmul: bool, mask=None):
  """flax's Conv/ConvTranspose parameters (fp32 `kernel` [kh, kw, in, out], lecun-normal;
  `bias` [out], zeros), the kernel masked, and `x` in the module's compute dtype: returns
  (x, kernel, bias, the dtype to sum product and bias in). For bf16 compute the sum is fp32,
  the bias stays fp32 and so does the kernel of the matmul forms (`mixed_matmul` casts it);
  XLA's form gets a bf16 kernel. Other compute dtypes cast all to it, as flax does."""
  kernel = module.param("kernel", _drawn_as_matrix(nn.initializers.lecun_normal()),
                        tuple(module.kernel_size) + (x.shape[-1], module.features), jnp.float32)
  bias = module.param("bias", nn.initializers.zeros_init(), (module.features,), jnp.float32)
  if mask is not None:
    kernel = kernel * mask
  dtype = jnp.dtype(nn.dtypes.canonicalize_dtype(x, kernel, bias, dtype=module.dtype))
  x = jnp.asarray(x, dtype)
  if dtype != jnp.bfloat16:
    return x, kernel.astype(dtype), bias.astype(dtype), dtype
  return x, kernel if matmul else kernel.astype(dtype), bias, jnp.float32


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
    matmul = _use_matmul(self.impl)
    x, kernel, bias, acc = _kernel_and_bias(self, x, matmul, self.mask)
    if matmul:
      narrows = self.features * self.strides[0] * self.strides[1] < x.shape[-1]
      form = conv_product_first if narrows else conv_im2col
      y = form(x, kernel, self.strides, live_taps(self.mask, *self.kernel_size), acc)
    else:
      y = lax.conv_general_dilated(x, kernel, self.strides, "SAME",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC")).astype(acc)
    return (y + bias).astype(x.dtype)  # fp32 bias and sum for bf16 compute (module docstring)


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
    matmul = _use_matmul(self.impl)
    x, kernel, bias, acc = _kernel_and_bias(self, x, matmul)
    if matmul:
      y = conv_transpose_phases(x, kernel, self.strides, acc)
    else:
      y = lax.conv_transpose(x, kernel, self.strides, "SAME",
                             dimension_numbers=("NHWC", "HWIO", "NHWC")).astype(acc)
    return (y + bias).astype(x.dtype)  # fp32 bias and sum for bf16 compute (module docstring)
