"""genjax.models.conv: the matmul-form convolutions equal XLA's, parameters
included, so the implementation is a speed choice that checkpoints do not see."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.config import PRNG_IMPLS, available_prng_impls
from genjax.models.conv import Conv, ConvTranspose, live_taps

# (kernel, stride, in, out, size): DCGAN's strided 4x4, the 3x3 output conv (narrowing: the
# product-first form), the conv VAE's 3x3 stride 2 on an odd size, PixelCNN's 1x1, the gated
# VAE's 5x5 stride 2, a strided narrowing conv, a kernel smaller than its stride (transposed:
# output phases no tap reaches) and a stride-1 transposed conv.
CASES = [(4, 2, 8, 16, 14), (3, 1, 8, 1, 28), (3, 2, 4, 8, 7), (1, 1, 8, 4, 7),
         (5, 2, 4, 6, 7), (3, 2, 16, 3, 7), (1, 2, 4, 3, 5), (3, 1, 4, 4, 6)]


def _perturbed(params):  # non-zero biases too; drawn flat (a rank-4 draw compiles slowly)
  return jax.tree.map(lambda a: a + 0.1 * jax.random.normal(
      jax.random.PRNGKey(5), (a.size,)).reshape(a.shape), params)


@pytest.mark.parametrize("k,s,cin,cout,size", CASES)
@pytest.mark.parametrize("transpose", [False, True], ids=["conv", "transpose"])
def test_matmul_convolutions_equal_flax(k, s, cin, cout, size, transpose):
  x = jax.random.normal(jax.random.PRNGKey(0), (3, size, size, cin))
  ref = (nn.ConvTranspose if transpose else nn.Conv)(cout, (k, k), strides=(s, s),
                                                    padding="SAME")
  ours = (ConvTranspose if transpose else Conv)(cout, (k, k), (s, s), impl="matmul")
  init = jax.jit(ref.init)(jax.random.PRNGKey(1), x)  # Jitted: op by op compiles slower.
  ours_init = jax.jit(ours.init)(jax.random.PRNGKey(1), x)
  assert jax.tree.structure(init) == jax.tree.structure(ours_init)
  for a, b in zip(jax.tree.leaves(init), jax.tree.leaves(ours_init), strict=True):
    np.testing.assert_array_equal(a, b)  # same names, shapes and initial values
  params = _perturbed(init)
  want = jax.jit(ref.apply)(params, x)
  np.testing.assert_allclose(jax.jit(ours.apply)(params, x), want, atol=2e-5, rtol=1e-5)
  np.testing.assert_allclose(
      jax.jit(ours.clone(impl="xla").apply)(params, x), want, atol=2e-5, rtol=1e-5)
  # Gradients too (they are what XLA:CPU was slow at).
  loss = lambda m: lambda p: jnp.sum(jnp.sin(m.apply(p, x)))
  for a, b in zip(jax.tree.leaves(jax.jit(jax.grad(loss(ours)))(params)),
                  jax.tree.leaves(jax.jit(jax.grad(loss(ref)))(params)), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_unknown_impl_is_a_clear_error():
  x = jnp.zeros((1, 4, 4, 1))
  with pytest.raises(ValueError, match="impl='cudnn'; use one of"):
    Conv(2, (3, 3), impl="cudnn").init(jax.random.PRNGKey(0), x)


def test_masked_conv_equals_flax_masked_conv():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 9, 3))
  mask = np.asarray(jax.random.bernoulli(jax.random.PRNGKey(2), 0.5, (5, 5, 3, 4)), np.float32)
  ref = nn.Conv(4, (5, 5), padding="SAME", mask=jnp.asarray(mask))
  params = _perturbed(ref.init(jax.random.PRNGKey(1), x))
  ours = Conv(4, (5, 5), mask=jnp.asarray(mask), impl="matmul")
  np.testing.assert_allclose(ours.apply(params, x), ref.apply(params, x), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("cin,cout", [(4, 6), (8, 2)], ids=["im2col", "product_first"])
def test_masked_taps_are_skipped_with_the_same_result_and_gradients(cin, cout):
  # A causal mask zeroes whole kernel taps: 5 of 3x3 type B's 9 remain, 24 of 7x7 type A's 49.
  from genjax.models.pixelcnn import causal_mask  # pylint: disable=import-outside-toplevel
  assert live_taps(causal_mask(3, "B", 4, 6), 3, 3) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
  assert len(live_taps(causal_mask(7, "A", 1, 6), 7, 7)) == 24
  assert len(live_taps(None, 3, 3)) == 9
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 9, cin))
  mask = causal_mask(3, "B", cin, cout)
  ref = nn.Conv(cout, (3, 3), padding="SAME", mask=jnp.asarray(mask))
  params = _perturbed(ref.init(jax.random.PRNGKey(1), x))
  ours = Conv(cout, (3, 3), mask=mask, impl="matmul")
  loss = lambda m: lambda p, x: jnp.sum(jnp.sin(m.apply(p, x)))
  np.testing.assert_allclose(jax.jit(ours.apply)(params, x), ref.apply(params, x),
                             atol=2e-5, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(jax.jit(jax.grad(loss(ours), (0, 1)))(params, x)),
                  jax.tree.leaves(jax.grad(loss(ref), (0, 1))(params, x)), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
  # A kernel with no live tap leaves the bias.
  empty = Conv(cout, (3, 3), mask=np.zeros((3, 3, cin, cout), np.float32), impl="matmul")
  np.testing.assert_allclose(empty.apply(params, x), np.broadcast_to(
      params["params"]["bias"], (2, 9, 9, cout)), atol=0)


@pytest.mark.parametrize("impl", PRNG_IMPLS)
def test_kernels_drawn_as_a_matrix_equal_flax_initial_values_under_every_prng(impl):
  # genjax draws a [kh, kw, in, out] kernel as its [kh * kw * in, out] matrix (fast to
  # compile); flax draws it in 4-D. The values must agree under every PRNG a run may use.
  if impl not in available_prng_impls():
    pytest.skip(f"{impl} needs jax >= 0.10.2; this is jax {jax.__version__}")
  x = jnp.ones((1, 5, 5, 2))
  key = jax.random.key(3, impl=impl)
  for ours, ref in [(Conv(4, (3, 3)), nn.Conv(4, (3, 3))),
                    (ConvTranspose(4, (3, 3), (2, 2)), nn.ConvTranspose(4, (3, 3), (2, 2)))]:
    a, b = ours.init(key, x)["params"]["kernel"], ref.init(key, x)["params"]["kernel"]
    assert a.shape == b.shape == (3, 3, 2, 4)
    np.testing.assert_array_equal(a, b)


# bf16 compute (fp32 parameters): DCGAN's strided 4x4 (im2col), a narrowing 3x3 (product
# first), a causal-masked 3x3 (skipped taps) and DCGAN's transposed 4x4 (phases).
BF16_CASES = {"im2col": (Conv, (16, (4, 4), (2, 2)), 8, None),
              "product_first": (Conv, (2, (3, 3), (1, 1)), 8, None),
              "masked": (Conv, (6, (3, 3), (1, 1)), 4, "B"),
              "transpose": (ConvTranspose, (8, (4, 4), (2, 2)), 8, None)}


def _bf16_layer(case, impl="matmul", batch=4):
  """(bf16 layer, its fp32 flax twin, perturbed fp32 params, bf16-exact input and cotangent)."""
  cls, (features, kernel, strides), cin, mask_type = BF16_CASES[case]
  mask = None
  if mask_type:
    from genjax.models.pixelcnn import causal_mask  # pylint: disable=import-outside-toplevel
    mask = causal_mask(3, mask_type, cin, features)
  layer = cls(features, kernel, strides, impl=impl, dtype=jnp.bfloat16,
              **({"mask": mask} if cls is Conv else {}))
  ref = (nn.ConvTranspose if cls is ConvTranspose else nn.Conv)(
      features, kernel, strides, padding="SAME", precision=jax.lax.Precision.HIGHEST,
      **({"mask": None if mask is None else jnp.asarray(mask)} if cls is Conv else {}))
  bf16 = lambda a: a.astype(jnp.bfloat16).astype(jnp.float32)  # noqa: E731
  x = bf16(jax.random.normal(jax.random.PRNGKey(0), (batch, 14, 14, cin)))
  params = _perturbed(layer.init(jax.random.PRNGKey(1), x))
  c = bf16(jax.random.normal(jax.random.PRNGKey(2), jax.eval_shape(ref.apply, params, x).shape))
  return layer, ref, params, x, c


def _param_grads(module, params, x, c):
  loss = lambda p: jnp.sum(module.apply(p, x).astype(jnp.float32) * c)  # noqa: E731
  return jax.jit(jax.grad(loss))(params)["params"]


def _close(got, want, rtol):  # relative to the gradient's largest entry (sums cancel)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * float(np.abs(want).max()))


@pytest.mark.parametrize("case", list(BF16_CASES))
def test_bf16_matmul_forms_give_fp32_kernel_and_bias_gradients(case):
  """bf16 x bf16 products summed in fp32: the kernel's and the bias's gradients equal fp32
  gradients of the same bf16-rounded operands to fp32 rounding, not bf16's ~4e-3 (the old
  code cast kernel and bias to bf16 before the product, rounding both gradients)."""
  layer, ref, params, x, c = _bf16_layer(case)
  assert layer.apply(params, x).dtype == jnp.bfloat16  # the compute dtype, as before
  got = _param_grads(layer, params, x, c)
  rounded = jax.tree.map(lambda a: a.astype(jnp.bfloat16).astype(jnp.float32), params)
  want = _param_grads(ref, rounded, x, c)  # bf16 kernel; the bias is added unrounded
  _close(got["kernel"], want["kernel"], 1e-5)
  _close(got["bias"], c.sum((0, 1, 2)), 1e-6)


@pytest.mark.parametrize("case", ["im2col", "transpose"])
def test_bf16_gradient_of_a_batch_is_the_sum_of_its_halves(case):
  """What a batch split over devices relies on: per-device gradients summed equal the whole
  batch's to fp32 rounding (bf16 rounding of each gradient made them differ by ~2e-3)."""
  layer, _, params, x, c = _bf16_layer(case, batch=8)
  whole = _param_grads(layer, params, x, c)
  halves = [_param_grads(layer, params, x[i:i + 4], c[i:i + 4]) for i in (0, 4)]
  for name in ("kernel", "bias"):
    _close(halves[0][name] + halves[1][name], whole[name], 1e-5)


@pytest.mark.parametrize("case", ["im2col", "transpose"])
def test_bf16_xla_form_adds_its_bias_in_fp32(case):
  """XLA's convolutions (GPU/TPU) convolve bf16 into bf16 as flax does; the bias joins in fp32,
  so its gradient is an fp32 sum. The kernel's gradient may be rounded to bf16 (by the kernel's
  cast; XLA:CPU computes it in fp32 and skips that rounding): checked to bf16 precision only."""
  layer, ref, params, x, c = _bf16_layer(case, impl="xla")
  assert layer.apply(params, x).dtype == jnp.bfloat16
  got = _param_grads(layer, params, x, c)
  _close(got["bias"], c.sum((0, 1, 2)), 1e-6)
  rounded = jax.tree.map(lambda a: a.astype(jnp.bfloat16).astype(jnp.float32), params)
  _close(got["kernel"], _param_grads(ref, rounded, x, c)["kernel"], 1e-2)


def _dots(jaxpr) -> list:
  """(operand dtypes, result dtype) of every dot_general, nested bodies included."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      found.append((tuple(str(v.aval.dtype) for v in eqn.invars), str(eqn.outvars[0].aval.dtype)))
    for p in eqn.params.values():
      inner = getattr(p, "jaxpr", None)
      if inner is not None:
        found += _dots(getattr(inner, "jaxpr", inner))
  return found


@pytest.mark.parametrize("case", list(BF16_CASES))
def test_bf16_matmul_forms_multiply_bf16_operands_forward_and_backward(case):
  """The fp32 kernel is cast inside `mixed_matmul`: every product, the gradients' included,
  stays bf16 x bf16 -> fp32 (the fast path on bf16 matrix units)."""
  layer, _, params, x, c = _bf16_layer(case)
  loss = lambda p, x: jnp.sum(layer.apply(p, x).astype(jnp.float32) * c)  # noqa: E731
  dots = _dots(jax.make_jaxpr(jax.grad(loss, (0, 1)))(params, x).jaxpr)
  assert len(dots) == 3, dots  # forward, input and kernel gradients
  assert all(d == (("bfloat16", "bfloat16"), "float32") for d in dots), dots
