"""genjax.models.mixed_dot: bf16 products accumulate and return in fp32, their gradients are
bf16 x bf16 -> fp32 products too, and fp32 layers compute exactly as plain Flax ones."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.models.conv import Conv, ConvTranspose
from genjax.models.mixed_dot import dense, mixed_matmul
from genjax.models.mlp_gan import MLPDiscriminator, MLPGenerator


def _operands(m=6, k=40, n=5, lead=()):
  kx, kw = jax.random.split(jax.random.PRNGKey(0))
  x = jax.random.normal(kx, lead + (m, k)).astype(jnp.bfloat16)
  w = jax.random.normal(kw, (k, n)).astype(jnp.bfloat16)
  return x, w


@pytest.mark.parametrize("lead", [(), (2, 3)])
def test_bf16_product_is_fp32_accumulated(lead):
  x, w = _operands(lead=lead)
  out = mixed_matmul(x, w)
  assert out.dtype == jnp.float32 and out.shape == lead + (6, 5)
  exact = np.asarray(x, np.float64) @ np.asarray(w, np.float64)  # the same bf16 operands
  np.testing.assert_allclose(out, exact, rtol=1e-5, atol=1e-5)  # no bf16 rounding of the sum


def test_bf16_gradients_match_fp32_gradients_of_the_same_operands():
  x, w = _operands()
  c = jax.random.normal(jax.random.PRNGKey(1), (6, 5))
  loss = lambda a, b: jnp.sum(jnp.sin(mixed_matmul(a, b)) * c)
  ref = lambda a, b: jnp.sum(jnp.sin(a @ b) * c)
  dx, dw = jax.grad(loss, argnums=(0, 1))(x, w)
  rx, rw = jax.grad(ref, argnums=(0, 1))(x.astype(jnp.float32), w.astype(jnp.float32))
  assert dx.dtype == dw.dtype == jnp.bfloat16
  # One bf16 rounding of the cotangent and one of the result: ~2 ulp of bf16 (2^-8 each).
  for got, want in ((dx, rx), (dw, rw)):
    np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=2e-2,
                               atol=2e-2 * float(jnp.abs(want).max()))


def _equations(fn, *args) -> list:
  """Every equation of `fn`'s jaxpr, those of jit / scan / remat / custom-VJP bodies included."""
  found = []

  def visit(jx):
    for eqn in jx.eqns:
      found.append(eqn)
      for p in eqn.params.values():  # nested bodies (ClosedJaxpr or Jaxpr)
        inner = getattr(p, "jaxpr", None)
        if inner is not None:
          visit(getattr(inner, "jaxpr", inner))
  visit(jax.make_jaxpr(fn)(*args).jaxpr)
  return found


def test_fp32_weight_is_cast_inside_and_its_gradient_stays_fp32():
  """An fp32 weight (the parameters' dtype) is multiplied as bf16, and its gradient leaves the
  fp32-accumulating product unrounded: the float64 product of the same bf16 operands."""
  x, w_bf16 = _operands()
  w = jax.random.normal(jax.random.PRNGKey(2), w_bf16.shape)  # fp32
  c = jax.random.normal(jax.random.PRNGKey(1), (6, 5)).astype(jnp.bfloat16)
  out, vjp = jax.vjp(mixed_matmul, x, w)
  np.testing.assert_array_equal(out, mixed_matmul(x, w.astype(jnp.bfloat16)))
  dx, dw = vjp(c.astype(jnp.float32))
  assert dx.dtype == jnp.bfloat16 and dw.dtype == jnp.float32
  exact = np.asarray(x, np.float64).T @ np.asarray(c, np.float64)
  np.testing.assert_allclose(dw, exact, rtol=1e-5, atol=1e-5)


def _converts_to_bf16(fn, *args) -> list[tuple[int, ...]]:
  """Shapes of every fp32 -> bf16 conversion in `fn`'s jaxpr (nested bodies included)."""
  return [tuple(eqn.outvars[0].aval.shape) for eqn in _equations(fn, *args)
          if eqn.primitive.name == "convert_element_type"
          and eqn.invars[0].aval.dtype == jnp.float32
          and eqn.outvars[0].aval.dtype == jnp.bfloat16]


def test_each_kernel_is_cast_to_bf16_once_per_forward_and_backward():
  """The backward pass reuses the forward's bf16 kernels and returns fp32 kernel gradients:
  no kernel goes fp32 -> bf16 a second time (nor its gradient bf16 -> fp32)."""
  g = MLPGenerator(dtype=jnp.bfloat16)
  z = jnp.ones((4, 100))
  params = g.init(jax.random.PRNGKey(0), z)
  grads_fn = jax.grad(lambda p: jnp.sum(g.apply(p, z) ** 2))
  kernels = sorted(tuple(k.shape) for k in jax.tree.leaves(params) if k.ndim == 2)
  cast = sorted(s for s in _converts_to_bf16(grads_fn, params) if len(s) == 2 and s in kernels)
  assert cast == kernels, cast
  grads = grads_fn(params)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(grads))


def test_bf16_dense_has_flax_dense_parameters():
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 7))
  ours, ref = dense(4, dtype=jnp.bfloat16), nn.Dense(4, dtype=jnp.bfloat16)
  mine, theirs = ours.init(jax.random.PRNGKey(1), x), ref.init(jax.random.PRNGKey(1), x)
  assert jax.tree.structure(mine) == jax.tree.structure(theirs)
  for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(theirs), strict=True):
    np.testing.assert_array_equal(a, b)  # same initial values: same keys, same order
  np.testing.assert_allclose(ours.apply(theirs, x), ref.apply(theirs, x), atol=5e-2)


def _dot_operand_dtypes(fn, *args):
  return [tuple(str(v.aval.dtype) for v in eqn.invars) + (str(eqn.outvars[0].aval.dtype),)
          for eqn in _equations(fn, *args) if eqn.primitive.name == "dot_general"]


def test_forward_and_both_gradient_products_are_bf16_in_fp32_out():
  """The property that makes bf16 fast on CPUs with bf16 matrix units: no product in the
  forward or backward pass multiplies an fp32 operand."""
  g = MLPGenerator(dtype=jnp.bfloat16)
  z = jnp.ones((4, 100))
  params = g.init(jax.random.PRNGKey(0), z)
  grad = jax.grad(lambda p: jnp.sum(g.apply(p, z) ** 2))
  dots = _dot_operand_dtypes(grad, params)
  assert len(dots) == 4 * 3, dots  # 4 layers: forward, input- and kernel-gradient
  assert all(d == ("bfloat16", "bfloat16", "float32") for d in dots), dots


def test_fp32_dense_is_plain_flax_dense():
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 7))
  ours, ref = dense(4), nn.Dense(4)
  params = ref.init(jax.random.PRNGKey(1), x)
  assert jax.tree.structure(ours.init(jax.random.PRNGKey(1), x)) == jax.tree.structure(params)
  np.testing.assert_array_equal(ours.apply(params, x), ref.apply(params, x))


def test_bf16_models_track_fp32_models():
  """The same fp32 parameters through bf16 and fp32 compute: outputs agree to bf16 precision."""
  z = jax.random.normal(jax.random.PRNGKey(0), (8, 100))
  g32, g16 = MLPGenerator(), MLPGenerator(dtype=jnp.bfloat16)
  d32, d16 = MLPDiscriminator(), MLPDiscriminator(dtype=jnp.bfloat16)
  gp = g32.init(jax.random.PRNGKey(1), z)
  x32, x16 = g32.apply(gp, z), g16.apply(gp, z)
  np.testing.assert_allclose(x16, x32, atol=3e-2)
  dp = d32.init(jax.random.PRNGKey(2), x32, train=False)
  np.testing.assert_allclose(d16.apply(dp, x32, train=False), d32.apply(dp, x32, train=False),
                             atol=3e-2)


@pytest.mark.parametrize("module", [Conv(8, (3, 3), (2, 2), impl="matmul"),
                                    ConvTranspose(8, (4, 4), (2, 2), impl="matmul")],
                         ids=["conv", "transpose"])
def test_bf16_matmul_convolutions_track_xla_fp32(module):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 7, 4))
  params = module.init(jax.random.PRNGKey(1), x)
  want = module.clone(impl="xla").apply(params, x)
  got = module.clone(dtype=jnp.bfloat16).apply(params, x)
  assert got.dtype == jnp.bfloat16  # the module's compute dtype, as on XLA's path
  np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=5e-2, rtol=2e-2)


def test_bf16_product_differentiates_under_shard_map_with_a_replicated_weight():
  """Under shard_map a replicated (device-invariant) kernel meets per-device activations, as
  D's parameters do in G's objective: the custom VJP must give the kernel's gradient summed
  over devices, as jnp.dot would, not a per-device gradient of the wrong type."""
  from jax.sharding import Mesh, PartitionSpec as P  # pylint: disable=import-outside-toplevel

  x, w = _operands(m=4, k=8, n=3)
  x = x.astype(jnp.bfloat16)
  loss = lambda x, w: jnp.sum(mixed_matmul(x, w) ** 2)  # noqa: E731
  mesh = Mesh(jax.devices()[:1], ("data",))
  dx, dw = jax.jit(jax.shard_map(jax.grad(loss, argnums=(0, 1)), mesh=mesh,
                                 in_specs=(P("data"), P()), out_specs=(P("data"), P())))(x, w)
  ref_dx, ref_dw = jax.grad(loss, argnums=(0, 1))(x, w)
  np.testing.assert_array_equal(np.asarray(dx), np.asarray(ref_dx))
  np.testing.assert_allclose(np.asarray(dw), np.asarray(ref_dw), rtol=1e-6)


def test_bf16_dense_adds_its_bias_in_fp32():
  """The bias joins the fp32 product in fp32: its value and its gradient (a sum over the
  batch) are not rounded to bf16, so splitting a batch over devices leaves it unchanged."""
  layer = dense(3, dtype=jnp.bfloat16)
  x = jax.random.normal(jax.random.PRNGKey(0), (64, 5))
  params = layer.init(jax.random.PRNGKey(1), x)
  params = jax.tree.map(lambda p: p + 1e-3 * jnp.arange(p.size).reshape(p.shape), params)
  g = jax.random.normal(jax.random.PRNGKey(2), (64, 3))
  grad = jax.grad(lambda p: jnp.sum(layer.apply(p, x) * g))(params)["params"]["bias"]
  np.testing.assert_allclose(np.asarray(grad), np.asarray(g.sum(0)), rtol=1e-6)
  y0 = layer.apply(params, jnp.zeros_like(x))  # The bias alone.
  np.testing.assert_array_equal(np.asarray(y0[0]), np.asarray(params["params"]["bias"]))
