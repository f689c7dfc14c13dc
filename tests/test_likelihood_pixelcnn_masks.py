"""PixelCNN causality: no output pixel sees itself or any later pixel (gradient test); the
gated two-stack PixelCNN also sees every earlier one (no blind spot)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import config as config_lib
from genjax.models.pixelcnn import (GatedPixelCNN, MaskedConv, PixelCNN, causal_mask,
                                    get_pixelcnn, horizontal_mask, vertical_mask)

H = W = 8


def _jacobian(module, x, scale=1.0):
  """d out[i] / d x[j] over raster indices i, j: [H*W, H*W], in one compiled call, with
  random parameters of standard deviation `scale`."""

  @jax.jit
  def jac(x):
    params = module.init(jax.random.PRNGKey(0), x)
    # Random (not zero) biases and weights everywhere, so a leak cannot hide behind a zero.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    params = jax.tree.unflatten(tree, [scale * jax.random.normal(k, p.shape)
                                       for k, p in zip(keys, leaves, strict=True)])
    f = lambda flat: module.apply(params, flat.reshape(1, H, W, 1))[0, ..., 0].reshape(-1)
    return jax.jacfwd(f)(x.reshape(-1))

  return np.asarray(jac(x))


def test_pixelcnn_output_depends_only_on_earlier_pixels():
  model = PixelCNN(features=8, num_blocks=1, head_features=8, image_shape=(H, W, 1))
  x = jax.random.bernoulli(jax.random.PRNGKey(1), 0.5, (1, H, W, 1)).astype(jnp.float32)
  jac = _jacobian(model, x)
  future_or_self = np.triu(np.ones_like(jac, bool))  # j >= i
  assert np.all(jac[future_or_self] == 0.0), "an output pixel sees itself or a later pixel"
  # ... but it does see the past: pixel (1, 0) depends on (0, 0), and the last pixel on many.
  assert jac[W, 0] != 0.0
  assert np.count_nonzero(jac[-1]) > H * W // 4


def test_gated_pixelcnn_sees_every_earlier_pixel_and_no_later_one():
  # Five layers reach 3 + 4 = 7 pixels up, left and right: the whole 8x8 past. (Small weights
  # keep tanh out of saturation, where a derivative can round to exactly zero.)
  x = jax.random.bernoulli(jax.random.PRNGKey(1), 0.5, (1, H, W, 1)).astype(jnp.float32)
  gated = _jacobian(GatedPixelCNN(features=8, num_layers=5, head_features=8,
                                  image_shape=(H, W, 1)), x, scale=0.3)
  past = np.tril(np.ones_like(gated, bool), k=-1)  # j < i
  assert np.all(gated[~past] == 0.0), "an output pixel sees itself or a later pixel"
  assert np.all(gated[past] != 0.0), f"blind spot: {np.argwhere(past & (gated == 0.0))[:5]}"
  # The single-stack PixelCNN of the same reach misses pixels up and to the right.
  plain = _jacobian(PixelCNN(features=8, num_blocks=4, head_features=8, image_shape=(H, W, 1)),
                    x, scale=0.3)
  assert np.all(plain[~past] == 0.0)
  row, col = 3 * W + 0, 1 * W + 6  # (3, 0) does not see (1, 6)
  assert plain[row, col] == 0.0 and gated[row, col] != 0.0


def test_stack_masks_layout():
  np.testing.assert_array_equal(vertical_mask(3, 1, 1)[..., 0, 0],
                                [[1, 1, 1], [1, 1, 1], [0, 0, 0]])
  np.testing.assert_array_equal(horizontal_mask(3, "A", 1, 1)[..., 0, 0], [[1, 0, 0]])
  np.testing.assert_array_equal(horizontal_mask(3, "B", 1, 1)[..., 0, 0], [[1, 1, 0]])


@pytest.mark.parametrize("mask_type,sees_self", [("A", False), ("B", True)])
def test_single_masked_conv_type_a_excludes_centre_type_b_keeps_it(mask_type, sees_self):
  conv = MaskedConv(features=1, kernel_size=5, mask_type=mask_type)
  x = jnp.ones((1, H, W, 1))
  jac = _jacobian(conv, x)
  assert np.all(jac[np.triu(np.ones_like(jac, bool), k=1)] == 0.0)  # no j > i
  assert np.all((np.diag(jac) != 0.0) == sees_self)
  assert jac[W + 1, 0] != 0.0  # (1,1) sees (0,0) in both types


def test_causal_mask_layout():
  a = causal_mask(3, "A", 1, 1)[..., 0, 0]
  b = causal_mask(3, "B", 1, 1)[..., 0, 0]
  np.testing.assert_array_equal(a, [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
  np.testing.assert_array_equal(b, [[1, 1, 1], [1, 1, 0], [0, 0, 0]])


@pytest.mark.parametrize("args,match", [((4, "A", 1, 1), "odd kernel"),
                                        ((3, "C", 1, 1), "mask_type")])
def test_causal_mask_bad_input(args, match):
  with pytest.raises(ValueError, match=match):
    causal_mask(*args)


def test_unknown_model_and_an_empty_stack_are_named():
  c = config_lib.base_config()
  c.family, c.model = "pixelcnn", "pixelcnn_xl"
  with pytest.raises(ValueError, match="Unknown PixelCNN model 'pixelcnn_xl'.*gated_pixelcnn"):
    get_pixelcnn(c)
  with pytest.raises(ValueError, match="num_layers >= 1"):
    GatedPixelCNN(num_layers=0).init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
