"""Mixed-precision matmul for bf16 compute: bf16 operands, fp32 accumulation and result.

With `dtype=bfloat16` a Flax `nn.Dense` multiplies bf16 operands into a bf16 result. XLA:CPU
runs that product through a generic path (no faster than fp32), while a bf16 x bf16 -> fp32
product (`preferred_element_type=float32`) reaches the CPU's bf16 matrix units (AMX /
AVX-512-BF16) and, on GPUs and TPUs, is what their matrix units compute anyway. Left to
autodiff, that product's backward pass would multiply the fp32 cotangent with a bf16
operand, i.e. fp32 matmuls again; `mixed_matmul`'s VJP casts the cotangent to the
operands' bf16 (which is what the cotangent of a bf16 result already is) so that both
gradient products are bf16 x bf16 -> fp32 as well.

The weight may come in fp32 (the parameters' dtype): it is then cast to bf16 inside the
product, the bf16 copy is what the backward pass reuses, and the weight's gradient leaves the
fp32-accumulating product as it is, in fp32. Casting the kernel before the product (as
`nn.Dense` does) would instead cast the gradient to bf16 and back, two extra passes over every
kernel per step on the backward pass's critical path, and a bf16 rounding of the gradient.

`Dense` is `nn.Dense` with that product for bf16 compute (`dense(...)` builds one);
`mixed_matmul` is also the plain `x @ w` of the matmul-form convolutions. Other compute
dtypes take ordinary products: the fp32 models compute exactly as before.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_CONTRACT_LAST_FIRST = (((1,), (0,)), ((), ()))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _bf16_matmul(x: jax.Array, w: jax.Array, w_dtype: Any) -> jax.Array:
  """[m, k] bf16 @ [k, n] (bf16, or fp32 cast here) -> [m, n] fp32."""
  return lax.dot_general(x, w.astype(jnp.bfloat16), _CONTRACT_LAST_FIRST,
                         preferred_element_type=jnp.float32)


def _bf16_matmul_fwd(x, w, w_dtype):
  w = w.astype(jnp.bfloat16)  # Cast once; the backward pass reuses this copy.
  return lax.dot_general(x, w, _CONTRACT_LAST_FIRST, preferred_element_type=jnp.float32), (x, w)


def _bf16_matmul_bwd(w_dtype, residuals, g):
  x, w = residuals
  g = g.astype(x.dtype)
  dx = lax.dot_general(g, w, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
  dw = lax.dot_general(x, g, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
  return dx.astype(x.dtype), dw.astype(w_dtype)


_bf16_matmul.defvjp(_bf16_matmul_fwd, _bf16_matmul_bwd)


def _varying_axes(a: jax.Array) -> frozenset:
  """The manual mesh axes `a` varies over: `.vma` on jax < 0.10, `.manual_axis_type` after."""
  aval = jax.typeof(a)
  if hasattr(aval, "vma"):
    return frozenset(aval.vma)
  return frozenset(getattr(getattr(aval, "manual_axis_type", None), "varying", ()))


def _common_manual_axes(x: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Under `shard_map`, `x` and `w` marked varying over the same mesh axes. JAX's own
  products do this implicitly (and psum the gradient of an invariant operand); a custom VJP
  must return each cotangent with its operand's type, so the cast goes before it, and its
  transpose does that psum."""
  vx, vw = _varying_axes(x), _varying_axes(w)
  if vx - vw:
    w = lax.pcast(w, tuple(sorted(vx - vw)), to="varying")
  if vw - vx:
    x = lax.pcast(x, tuple(sorted(vw - vx)), to="varying")
  return x, w


def mixed_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """x [..., k] @ w [k, n]: a bf16 `x` with a bf16 or fp32 `w` gives an fp32 result (bf16
  operands, fp32 accumulation; `w`'s gradient in `w`'s dtype); other dtypes an ordinary
  matmul."""
  lead, x = x.shape[:-1], x.reshape((-1, x.shape[-1]))
  if x.dtype != jnp.bfloat16 or w.dtype not in (jnp.bfloat16, jnp.float32):
    out = x @ w
  else:
    out = _bf16_matmul(*_common_manual_axes(x, w), w.dtype)
  return out.reshape(lead + (w.shape[-1],))


class Dense(nn.Dense):
  """`nn.Dense` whose bf16 compute multiplies bf16 inputs with the uncast kernel through
  `mixed_matmul` (fp32 accumulation and result, the kernel's and the bias's gradients in the
  parameters' dtype), whatever `dot_general` it is given. Same parameters and names as
  `nn.Dense`; other compute dtypes (or parameters neither fp32 nor bf16) are `nn.Dense`
  itself."""

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    if self.dtype != jnp.bfloat16 or self.param_dtype not in (jnp.float32, jnp.bfloat16):
      return super().__call__(inputs)
    kernel = self.param("kernel", self.kernel_init, (jnp.shape(inputs)[-1], self.features),
                        self.param_dtype)
    y = mixed_matmul(inputs.astype(jnp.bfloat16), kernel)
    if self.use_bias:
      bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
      # Added to the fp32 product in fp32: a bf16 cast here would round the bias and, on the
      # way back, its gradient (summed over the batch) to bf16.
      y = y + bias.astype(jnp.float32)
    return y


def dense(features: int, **kwargs: Any) -> Dense:
  """A `Dense` layer: for bf16 compute its product accumulates and returns in fp32."""
  return Dense(features, **kwargs)
