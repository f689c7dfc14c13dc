"""Mixed-precision matmul for bf16 compute: bf16 operands, fp32 accumulation and result.

With `dtype=bfloat16` a Flax `nn.Dense` multiplies bf16 operands into a bf16 result. XLA:CPU
runs that product through a generic path (no faster than fp32), while a bf16 x bf16 -> fp32
product (`preferred_element_type=float32`) reaches the CPU's bf16 matrix units (AMX /
AVX-512-BF16) and, on GPUs and TPUs, is what their matrix units compute anyway. Left to
autodiff, that product's backward pass would multiply the fp32 cotangent with a bf16
operand, i.e. fp32 matmuls again; `mixed_dot_general`'s VJP casts the cotangent to the
operands' bf16 (which is what the cotangent of a bf16 result already is) so that both
gradient products are bf16 x bf16 -> fp32 as well.

`mixed_dot_general` has `jax.lax.dot_general`'s signature and serves as the `dot_general`
of `nn.Dense` (`dense(...)` builds such a layer); `mixed_matmul` is the plain `x @ w` of the
matmul-form convolutions. fp32 operands take ordinary `lax.dot_general`: the fp32 models
compute exactly as before.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_CONTRACT_LAST_FIRST = (((1,), (0,)), ((), ()))


@jax.custom_vjp
def _bf16_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """[m, k] bf16 @ [k, n] bf16 -> [m, n] fp32."""
  return lax.dot_general(x, w, _CONTRACT_LAST_FIRST, preferred_element_type=jnp.float32)


def _bf16_matmul_fwd(x, w):
  return _bf16_matmul(x, w), (x, w)


def _bf16_matmul_bwd(residuals, g):
  x, w = residuals
  g = g.astype(x.dtype)
  dx = lax.dot_general(g, w, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
  dw = lax.dot_general(x, g, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
  return dx.astype(x.dtype), dw.astype(w.dtype)


_bf16_matmul.defvjp(_bf16_matmul_fwd, _bf16_matmul_bwd)


def mixed_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """x [..., k] @ w [k, n]: bf16 operands give an fp32 result (fp32 accumulation); other
  dtypes an ordinary matmul."""
  if x.dtype != jnp.bfloat16 or w.dtype != jnp.bfloat16:
    return x @ w
  lead = x.shape[:-1]
  out = _bf16_matmul(x.reshape((-1, x.shape[-1])), w)
  return out.reshape(lead + (w.shape[-1],))


def mixed_dot_general(lhs, rhs, dimension_numbers, precision=None,
                      preferred_element_type=None, **kwargs):
  """`lax.dot_general` with `mixed_matmul` for a bf16 Dense layer's product (contract the
  last axis of `lhs` with the first of a 2-D `rhs`, no batch axes)."""
  (lhs_contract, rhs_contract), batch = dimension_numbers
  is_dense = (rhs.ndim == 2 and tuple(lhs_contract) == (lhs.ndim - 1,)
              and tuple(rhs_contract) == (0,) and batch == ((), ()))
  if is_dense and lhs.dtype == jnp.bfloat16 and rhs.dtype == jnp.bfloat16:
    return mixed_matmul(lhs, rhs)
  return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                         preferred_element_type=preferred_element_type, **kwargs)


def dense(features: int, **kwargs: Any) -> nn.Dense:
  """`nn.Dense` whose bf16 product accumulates and returns in fp32 (`mixed_dot_general`)."""
  return nn.Dense(features, dot_general=mixed_dot_general, **kwargs)
