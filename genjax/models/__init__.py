"""Pure Flax generative models. `get_gan(config)` builds a (generator, discriminator) pair."""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

from genjax.models.mlp_gan import MLPDiscriminator, MLPGenerator, torch_linear

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str):
  if name not in _DTYPES:
    raise ValueError(f"Unknown compute dtype {name!r}; use one of {sorted(_DTYPES)}.")
  return _DTYPES[name]


def _mlp_gan(config) -> tuple[nn.Module, nn.Module]:
  dtype = compute_dtype(config.compute_dtype)
  return (MLPGenerator(latent_dim=config.latent_dim, dtype=dtype),
          MLPDiscriminator(dropout_rate=config.model_args.get("dropout_rate", 0.3),
                           dtype=dtype))


# Each builder takes the whole config and returns (generator, discriminator).
GAN_MODELS: dict[str, Callable] = {"mlp_gan": _mlp_gan}


def get_gan(config) -> tuple[nn.Module, nn.Module]:
  if config.model not in GAN_MODELS:
    raise ValueError(f"Unknown GAN model {config.model!r}; known: {sorted(GAN_MODELS)}.")
  return GAN_MODELS[config.model](config)


__all__ = ["GAN_MODELS", "MLPDiscriminator", "MLPGenerator", "compute_dtype", "get_gan",
           "torch_linear"]
