"""DCGAN (Radford et al. 2016) for 28x28 images, plus its class-conditional variant.

G: z[latent] (+ label embedding) -> Dense 7*7*4w -> BN, ReLU -> ConvT 2w (stride 2, 14x14)
   -> BN, ReLU -> ConvT w (stride 2, 28x28) -> BN, ReLU -> Conv C 3x3 -> tanh.
   In a per-device (shard_map) step, `axis_name` names the data axis: BN then averages its
   batch statistics over it, so it normalises with the global batch's, as on one device.
D: x[28,28,C] -> Conv w s2 -> LReLU(0.2) -> Conv 2w s2 -> LReLU -> flatten -> Dense 1.
   No batch norm in D: per-sample gradient penalties (WGAN-GP, R1) are only defined when
   D's output for one image does not depend on the rest of the batch. With
   `spectral_norm=True` every D layer is wrapped in `nn.SpectralNorm`, whose power-iteration
   vector lives in the 'batch_stats' collection (updated only when `train=True`).
The conditional D is a projection discriminator (Miyato & Koyama 2018):
   logit = psi(h) + <embed(y), h>, with h the flattened features; under spectral norm the
   class embedding is normalised too, as in the public implementations.
Initialisation is flax's default (LeCun-normal kernels, zero biases), not the paper's
N(0, 0.02).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.models.conv import Conv, ConvTranspose
from genjax.models.mixed_dot import dense
from genjax.models.mlp_gan import IMAGE_SHAPE, LATENT_DIM, check_input

NUM_CLASSES = 10


def _sn(layer: nn.Module, use: bool, train: bool):
  """`layer` itself, or a callable applying it under spectral normalisation."""
  if not use:
    return layer
  return lambda x: nn.SpectralNorm(layer)(x, update_stats=train)


def _check_labels(labels, batch: int, what: str) -> None:
  if labels is None:
    raise ValueError(f"{what} is class-conditional: pass labels int32[{batch}].")
  if labels.shape != (batch,):
    raise ValueError(f"{what} expects labels of shape [{batch}], got {tuple(labels.shape)}.")


class DCGenerator(nn.Module):
  """z [B, latent_dim] (and labels [B] if conditional) -> images [B, 28, 28, C] in [-1, 1]."""
  latent_dim: int = LATENT_DIM
  width: int = 64
  image_shape: tuple[int, int, int] = IMAGE_SHAPE
  num_classes: int = 0          # > 0: class-conditional (label embedding concatenated to z).
  dtype: Any = jnp.float32
  axis_name: str | None = None  # The mesh axis BN's batch statistics are averaged over.

  @property
  def conditional(self) -> bool:
    return self.num_classes > 0

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array | None = None, train: bool = True
               ) -> jax.Array:
    check_input(z, (self.latent_dim,), type(self).__name__)
    if self.image_shape[0] % 4 or self.image_shape[1] % 4:
      raise ValueError(f"{type(self).__name__} upsamples an (H/4)x(W/4) map twice by 2: "
                       f"image_shape {tuple(self.image_shape)} needs H and W divisible by 4.")
    h0, w0 = self.image_shape[0] // 4, self.image_shape[1] // 4  # 7x7 for 28x28.
    x = z
    if self.conditional:
      _check_labels(labels, z.shape[0], type(self).__name__)
      x = jnp.concatenate([x, nn.Embed(self.num_classes, self.latent_dim)(labels)], -1)
    norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype,
                                axis_name=self.axis_name)
    x = dense(h0 * w0 * 4 * self.width, dtype=self.dtype)(x)
    x = nn.relu(norm()(x.reshape((-1, h0, w0, 4 * self.width))))         # [B, 7, 7, 4w]
    for mult in (2, 1):                                                     # 14x14, 28x28
      x = ConvTranspose(mult * self.width, (4, 4), (2, 2), dtype=self.dtype)(x)  # 'SAME'
      x = nn.relu(norm()(x))
    x = Conv(self.image_shape[2], (3, 3), dtype=self.dtype)(x)  # 'SAME', stride 1
    return jnp.tanh(x).astype(jnp.float32)                                 # [B, 28, 28, C]


class DCDiscriminator(nn.Module):
  """images [B, 28, 28, C] (and labels [B] if conditional) -> logits [B]."""
  width: int = 64
  image_shape: tuple[int, int, int] = IMAGE_SHAPE
  num_classes: int = 0          # > 0: projection discriminator.
  spectral_norm: bool = False
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @property
  def conditional(self) -> bool:
    return self.num_classes > 0

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array | None = None, train: bool = True
               ) -> jax.Array:
    check_input(x, tuple(self.image_shape), type(self).__name__)
    sn = lambda layer: _sn(layer, self.spectral_norm, train)
    for mult in (1, 2):                                                     # 14x14, 7x7
      x = sn(Conv(mult * self.width, (4, 4), (2, 2), dtype=self.dtype))(x)  # 'SAME'
      x = nn.leaky_relu(x, 0.2)
      if self.dropout_rate > 0:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    h = x.reshape((x.shape[0], -1))                                         # [B, 7*7*2w]
    logit = sn(dense(1, dtype=self.dtype))(h)[:, 0]                          # [B]
    if self.conditional:
      _check_labels(labels, h.shape[0], type(self).__name__)
      embed = sn(nn.Embed(self.num_classes, h.shape[-1], dtype=self.dtype))(labels)  # [B, F]
      logit = logit + jnp.sum(embed * h, axis=-1)
    return logit.astype(jnp.float32)
