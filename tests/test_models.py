"""The tutorial MLP GAN: exact architecture, PyTorch-style initialisation, clear shape errors;
DCGAN shape and spectral-norm checks."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.models import DCDiscriminator, DCGenerator, MLPDiscriminator, MLPGenerator


def _count(params):
  return sum(x.size for x in jax.tree.leaves(params))


@pytest.fixture(scope="module")
def params():
  g, d = MLPGenerator(), MLPDiscriminator()
  return (g.init(jax.random.PRNGKey(0), jnp.zeros((1, 100))),
          d.init(jax.random.PRNGKey(1), jnp.zeros((1, 28, 28, 1)), train=False))


def test_parameter_counts_match_the_tutorial(params):
  g_params, d_params = params
  assert _count(g_params) == 1_486_352
  assert _count(d_params) == 1_460_225


def test_layer_widths(params):
  g_params, d_params = params
  g_shapes = [p["kernel"].shape for p in g_params["params"].values()]
  d_shapes = [p["kernel"].shape for p in d_params["params"].values()]
  assert g_shapes == [(100, 256), (256, 512), (512, 1024), (1024, 784)]
  assert d_shapes == [(784, 1024), (1024, 512), (512, 256), (256, 1)]


def test_initialisation_is_torch_linear_default(params):
  for tree in params:
    for layer in tree["params"].values():
      fan_in = layer["kernel"].shape[0]
      bound = 1 / np.sqrt(fan_in)
      for leaf in (layer["kernel"], layer["bias"]):
        leaf = np.asarray(leaf)
        assert np.abs(leaf).max() <= bound
        if leaf.size > 1000:  # Uniform(-b, b) has std b/sqrt(3); LeCun normal would not.
          np.testing.assert_allclose(leaf.std(), bound / np.sqrt(3), rtol=0.05)
      assert np.abs(np.asarray(layer["bias"])).max() > 0  # Not Flax's zero bias.


def test_outputs(params):
  g_params, d_params = params
  images = MLPGenerator().apply(g_params, jax.random.normal(jax.random.PRNGKey(2), (5, 100)))
  assert images.shape == (5, 28, 28, 1)
  assert float(jnp.abs(images).max()) <= 1.0
  d = MLPDiscriminator()
  eval_logits = d.apply(d_params, images, train=False)
  assert eval_logits.shape == (5,)
  train_logits = d.apply(d_params, images, train=True, rngs={"dropout": jax.random.PRNGKey(3)})
  assert not np.allclose(eval_logits, train_logits)  # Dropout is active in training only.


def test_wrong_input_shapes_get_clear_errors(params):
  g_params, d_params = params
  with pytest.raises(ValueError, match=r"MLPDiscriminator expects input of shape "
                                       r"\[batch, 28, 28, 1\], got \(4, 32, 32, 3\)"):
    MLPDiscriminator().apply(d_params, jnp.zeros((4, 32, 32, 3)), train=False)
  with pytest.raises(ValueError, match=r"MLPGenerator expects input of shape \[batch, 100\]"):
    MLPGenerator().apply(g_params, jnp.zeros((4, 64)))


def test_bf16_compute_keeps_fp32_params():
  g = MLPGenerator(dtype=jnp.bfloat16)
  p = g.init(jax.random.PRNGKey(0), jnp.zeros((1, 100)))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(p))
  assert g.apply(p, jnp.ones((2, 100))).dtype == jnp.float32


def test_dcgan_generator_refuses_image_sizes_it_cannot_make():
  # G upsamples an (H/4)x(W/4) map twice by 2: any other size came out 4*(H//4) silently.
  z = jnp.zeros((2, 100))
  with pytest.raises(ValueError, match=r"image_shape \(30, 30, 1\).*divisible by 4"):
    DCGenerator(width=4, image_shape=(30, 30, 1)).init(jax.random.PRNGKey(0), z, train=False)
  g = DCGenerator(width=4, image_shape=(32, 32, 3))
  variables = jax.jit(functools.partial(g.init, train=False))(jax.random.PRNGKey(0), z)
  assert jax.eval_shape(functools.partial(g.apply, train=False), variables, z).shape == (
      2, 32, 32, 3)


def test_spectral_norm_covers_the_projection_discriminator_embedding():
  # Miyato & Koyama's projection D normalises every layer, the class embedding included:
  # scaling the embedding then leaves the logits unchanged.
  d = DCDiscriminator(width=4, num_classes=10, spectral_norm=True)
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 28, 28, 1))
  labels = jnp.array([0, 3, 7])
  variables = jax.jit(functools.partial(d.init, train=False))(jax.random.PRNGKey(1), x, labels)
  params = variables["params"]
  scaled = {**variables, "params": {**params, "Embed_0": {
      "embedding": 10.0 * params["Embed_0"]["embedding"]}}}
  apply = jax.jit(functools.partial(d.apply, train=False))
  np.testing.assert_allclose(apply(scaled, x, labels), apply(variables, x, labels), rtol=1e-4,
                             atol=1e-5)
