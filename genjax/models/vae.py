"""Variational autoencoders as pure Flax modules: MLP, convolutional and gated convolutional
encoder/decoder.

The encoder maps images [B,28,28,1] to the mean and log-variance of a diagonal Gaussian
q(z|x) [B,L]; the decoder maps z [B,L] to per-pixel likelihood parameters [B,28,28,P]:
P = 1 Bernoulli logits (binarised data) or P = 2 Gaussian (mean, log-scale) for continuous
[0,1] intensities. The prior is N(0, I) (`latent_prior` fits a mixture to a trained model's
posteriors). The maths (ELBO, importance weights) lives in `genjax.train.vae`; these modules
only compute.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.models.conv import Conv, ConvTranspose
from genjax.models.mixed_dot import dense
from genjax.models.mlp_gan import check_input

IMAGE_SHAPE = (28, 28, 1)
LIKELIHOODS = {"bernoulli": 1, "gaussian": 2}  # name -> decoder channels per pixel.


def _gaussian_head(h: jax.Array, latent_dim: int, dtype: Any) -> tuple[jax.Array, jax.Array]:
  """The encoders' last Dense: features [B, F] -> (mean, logvar) [B, latent_dim] each, fp32."""
  out = dense(2 * latent_dim, dtype=dtype)(h).astype(jnp.float32)
  mean, logvar = jnp.split(out, 2, axis=-1)
  return mean, logvar


class MLPEncoder(nn.Module):
  """images [B,28,28,1] -> (mean, logvar) [B, latent_dim] each."""
  latent_dim: int
  hidden: Sequence[int] = (512, 512)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    check_input(x, IMAGE_SHAPE, type(self).__name__)
    h = x.reshape((x.shape[0], -1))  # [B, 784]
    for width in self.hidden:
      h = nn.relu(dense(width, dtype=self.dtype)(h))
    return _gaussian_head(h, self.latent_dim, self.dtype)


class MLPDecoder(nn.Module):
  """z [B, latent_dim] -> likelihood parameters [B, 28, 28, out_channels]."""
  latent_dim: int
  out_channels: int = 1
  hidden: Sequence[int] = (512, 512)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    check_input(z, (self.latent_dim,), type(self).__name__)
    h = z
    for width in self.hidden:
      h = nn.relu(dense(width, dtype=self.dtype)(h))
    rows, cols, _ = IMAGE_SHAPE
    out = dense(rows * cols * self.out_channels, dtype=self.dtype)(h)
    return out.reshape((z.shape[0], rows, cols, self.out_channels)).astype(jnp.float32)


class ConvEncoder(nn.Module):
  """images [B,28,28,1] -> (mean, logvar): two stride-2 convs (28 -> 14 -> 7), one Dense."""
  latent_dim: int
  channels: Sequence[int] = (32, 64)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    check_input(x, IMAGE_SHAPE, type(self).__name__)
    h = x
    for ch in self.channels:
      h = nn.relu(Conv(ch, (3, 3), (2, 2), dtype=self.dtype)(h))  # 'SAME'
    h = h.reshape((h.shape[0], -1))  # [B, 7*7*C]
    h = nn.relu(dense(512, dtype=self.dtype)(h))
    return _gaussian_head(h, self.latent_dim, self.dtype)


class ConvDecoder(nn.Module):
  """z -> likelihood parameters [B,28,28,P]: Dense to 7x7, two stride-2 transposed convs."""
  latent_dim: int
  out_channels: int = 1
  channels: Sequence[int] = (64, 32)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    check_input(z, (self.latent_dim,), type(self).__name__)
    h = nn.relu(dense(512, dtype=self.dtype)(z))
    h = nn.relu(dense(7 * 7 * self.channels[0], dtype=self.dtype)(h))
    h = h.reshape((z.shape[0], 7, 7, self.channels[0]))
    for ch in self.channels:  # 7 -> 14 -> 28
      h = nn.relu(ConvTranspose(ch, (3, 3), (2, 2), dtype=self.dtype)(h))  # 'SAME'
    out = Conv(self.out_channels, (3, 3), dtype=self.dtype)(h)  # 'SAME', stride 1
    return out.astype(jnp.float32)  # [B, 28, 28, P]


class GatedConv(nn.Module):
  """h * sigmoid(g), h and g from one convolution with 2 * features outputs: the gated
  convolution (Dauphin et al. 2017) of the VAE of van den Berg et al. (2018, "Sylvester
  normalizing flows"). Stride 2 downsamples; with `up` a stride-2 transposed convolution
  doubles the size. 'SAME' padding."""
  features: int
  kernel: int = 5
  stride: int = 1
  up: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    size, stride = (self.kernel, self.kernel), (self.stride, self.stride)
    if self.up:
      hg = ConvTranspose(2 * self.features, size, stride, dtype=self.dtype)(x)
    else:
      hg = Conv(2 * self.features, size, stride, dtype=self.dtype)(x)
    return _gate(hg)


def _gate(hg: jax.Array) -> jax.Array:
  """[..., 2F] -> h * sigmoid(g) [..., F], h and g the two halves of the last axis."""
  h, g = jnp.split(hg, 2, axis=-1)
  return h * nn.sigmoid(g)


def _gated_dense(h: jax.Array, features: int, dtype: Any) -> jax.Array:
  """The gate of `GatedConv` on a Dense layer (a 7x7 'VALID' convolution of a 7x7 map)."""
  return _gate(dense(2 * features, dtype=dtype)(h))


class GatedConvEncoder(nn.Module):
  """images [B,28,28,1] -> (mean, logvar): five 5x5 gated convs, channels (c1, c1, c2, c2,
  c2) with strides (1, 2, 1, 2, 1) (28 -> 14 -> 7), then a gated Dense to `hidden`."""
  latent_dim: int
  channels: Sequence[int] = (32, 64)
  hidden: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    check_input(x, IMAGE_SHAPE, type(self).__name__)
    c1, c2 = self.channels
    h = x
    for ch, stride in ((c1, 1), (c1, 2), (c2, 1), (c2, 2), (c2, 1)):
      h = GatedConv(ch, stride=stride, dtype=self.dtype)(h)
    h = _gated_dense(h.reshape((h.shape[0], -1)), self.hidden, self.dtype)  # [B, hidden]
    return _gaussian_head(h, self.latent_dim, self.dtype)


class GatedConvDecoder(nn.Module):
  """z -> likelihood parameters [B,28,28,P]: a gated Dense to 7x7xc2, then 5x5 gated convs
  mirroring the encoder (c2 at 7, up to c1 at 14, c1, up to c1 at 28, c1) and a 1x1 conv."""
  latent_dim: int
  out_channels: int = 1
  channels: Sequence[int] = (32, 64)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    check_input(z, (self.latent_dim,), type(self).__name__)
    c1, c2 = self.channels
    h = _gated_dense(z, 7 * 7 * c2, self.dtype).reshape((z.shape[0], 7, 7, c2))
    for ch, stride, up in ((c2, 1, False), (c1, 2, True), (c1, 1, False), (c1, 2, True),
                           (c1, 1, False)):
      h = GatedConv(ch, stride=stride, up=up, dtype=self.dtype)(h)  # 7 -> 14 -> 28
    out = Conv(self.out_channels, (1, 1), dtype=self.dtype)(h)
    return out.astype(jnp.float32)  # [B, 28, 28, P]


class VAE(nn.Module):
  """Encoder and decoder under one parameter tree; `encode` and `decode` are the methods
  the ELBO uses (`vae.apply(params, x, method=VAE.encode)`)."""
  encoder: nn.Module
  decoder: nn.Module

  def __call__(self, x: jax.Array) -> jax.Array:
    """Initialises both halves: decodes the posterior mean of x."""
    mean, _ = self.encoder(x)
    return self.decoder(mean)

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return self.encoder(x)

  def decode(self, z: jax.Array) -> jax.Array:
    return self.decoder(z)


def get_vae(config) -> VAE:
  """The VAE of `config.model` ('vae_mlp' | 'vae_conv' | 'vae_gated'); sizes from
  `config.model_args`."""
  from genjax.models import compute_dtype  # pylint: disable=import-outside-toplevel

  if config.likelihood not in LIKELIHOODS:
    raise ValueError(f"config.likelihood={config.likelihood!r}; use one of "
                     f"{sorted(LIKELIHOODS)}.")
  dtype = compute_dtype(config.compute_dtype)
  latent, out_ch = config.latent_dim, LIKELIHOODS[config.likelihood]
  args = config.model_args
  if config.model == "vae_mlp":
    hidden = tuple(args.get("hidden", (512, 512)))
    return VAE(MLPEncoder(latent, hidden, dtype), MLPDecoder(latent, out_ch, hidden, dtype))
  if config.model == "vae_conv":
    channels = tuple(args.get("channels", (32, 64)))
    return VAE(ConvEncoder(latent, channels, dtype),
               ConvDecoder(latent, out_ch, channels[::-1], dtype))
  if config.model == "vae_gated":
    channels = tuple(args.get("channels", (32, 64)))
    return VAE(GatedConvEncoder(latent, channels, args.get("hidden", 256), dtype),
               GatedConvDecoder(latent, out_ch, channels, dtype))
  raise ValueError(f"Unknown VAE model {config.model!r}; known: "
                   "['vae_conv', 'vae_gated', 'vae_mlp'].")
