"""The MLP GAN of the reference PyTorch tutorial, as pure Flax modules.

G: z[100] -> 256 -> 512 -> 1024 -> 784, LeakyReLU(0.2) after each hidden layer, Tanh out.
D: x[784] -> 1024 -> 512 -> 256 -> 1, LeakyReLU(0.2), Dropout(0.3) after the first two
   hidden layers; returns logits (the loss applies the sigmoid stably).
The reference model as the project's foundation issue fixes it (with batch 64). The notebook
it follows, lyeoni/pytorch-mnist-GAN, also drops out after the third hidden layer and trains
at batch 100; genjax keeps the issue's network, and so does its PyTorch baseline.

Both layers are initialised as PyTorch's `nn.Linear` (weights and biases uniform in
+-1/sqrt(fan_in)). The tutorial silently relies on that: with Flax's default (LeCun normal
weights, zero biases) its discriminator wins in the first epoch.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.models.mixed_dot import dense

IMAGE_SHAPE = (28, 28, 1)
LATENT_DIM = 100


def torch_linear_kernel_init(key, shape, dtype=jnp.float32):
  """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for a [fan_in, fan_out] kernel."""
  bound = 1.0 / jnp.sqrt(shape[0])
  return jax.random.uniform(key, shape, dtype, -bound, bound)


def torch_linear(features: int, fan_in: int, dtype: Any, name: str | None = None) -> nn.Dense:
  """nn.Dense initialised like torch.nn.Linear. The bias bound needs fan_in, which a Flax
  bias initialiser does not see, hence the explicit argument."""
  bound = 1.0 / fan_in ** 0.5

  def bias_init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return dense(features, kernel_init=torch_linear_kernel_init, bias_init=bias_init,
               dtype=dtype, param_dtype=jnp.float32, name=name)


def check_input(x: jax.Array, trailing: tuple[int, ...], what: str) -> None:
  """Raises one clear error when `x` is not [B, *trailing]."""
  if x.ndim != len(trailing) + 1 or tuple(x.shape[1:]) != tuple(trailing):
    raise ValueError(f"{what} expects input of shape [batch, {', '.join(map(str, trailing))}]"
                     f", got {tuple(x.shape)}.")


class MLPGenerator(nn.Module):
  """z [B, latent_dim] -> images [B, 28, 28, 1] in [-1, 1]."""
  latent_dim: int = LATENT_DIM
  hidden: Sequence[int] = (256, 512, 1024)
  image_shape: tuple[int, int, int] = IMAGE_SHAPE
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
    del train  # No dropout or normalisation in G.
    check_input(z, (self.latent_dim,), type(self).__name__)
    x, fan_in = z, self.latent_dim
    for width in self.hidden:
      x = nn.leaky_relu(torch_linear(width, fan_in, self.dtype)(x), 0.2)
      fan_in = width
    out_dim = self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
    x = jnp.tanh(torch_linear(out_dim, fan_in, self.dtype)(x))
    return x.reshape((z.shape[0],) + tuple(self.image_shape)).astype(jnp.float32)


class MLPDiscriminator(nn.Module):
  """images [B, 28, 28, 1] -> logits [B]."""
  hidden: Sequence[int] = (1024, 512, 256)
  dropout_rate: float = 0.3
  image_shape: tuple[int, int, int] = IMAGE_SHAPE
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    check_input(x, tuple(self.image_shape), type(self).__name__)
    x = x.reshape((x.shape[0], -1))  # [B, 784]
    fan_in = x.shape[-1]
    for i, width in enumerate(self.hidden):
      x = nn.leaky_relu(torch_linear(width, fan_in, self.dtype)(x), 0.2)
      if i < 2:  # After the first two hidden layers only (see the module docstring).
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      fan_in = width
    return torch_linear(1, fan_in, self.dtype)(x)[:, 0].astype(jnp.float32)
