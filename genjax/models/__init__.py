"""Pure Flax generative models. `get_gan(config)` builds a (generator, discriminator) pair."""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

from genjax.models.dcgan import DCDiscriminator, DCGenerator
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


def _dcgan(config, num_classes: int = 0) -> tuple[nn.Module, nn.Module]:
  dtype = compute_dtype(config.compute_dtype)
  args = config.model_args
  return (DCGenerator(latent_dim=config.latent_dim, width=args.get("width", 64),
                      num_classes=num_classes, dtype=dtype),
          DCDiscriminator(width=args.get("width", 64), num_classes=num_classes,
                          spectral_norm=config.spectral_norm,
                          dropout_rate=args.get("dropout_rate", 0.0), dtype=dtype))


def _cgan(config) -> tuple[nn.Module, nn.Module]:
  # Label embedding in G, projection D; the classes are the dataset's (all have 10).
  return _dcgan(config, num_classes=10)


# Each builder takes the whole config and returns (generator, discriminator). A pair is
# class-conditional when its modules have `conditional == True`.
GAN_MODELS: dict[str, Callable] = {"mlp_gan": _mlp_gan, "dcgan": _dcgan, "cgan": _cgan}


def get_gan(config) -> tuple[nn.Module, nn.Module]:
  if config.model not in GAN_MODELS:
    raise ValueError(f"Unknown GAN model {config.model!r}; known: {sorted(GAN_MODELS)}.")
  if config.spectral_norm and config.model == "mlp_gan":
    raise ValueError("config.spectral_norm=True is implemented for the conv discriminators "
                     "('dcgan', 'cgan'), not for 'mlp_gan'.")
  return GAN_MODELS[config.model](config)


def is_conditional(module: nn.Module) -> bool:
  return bool(getattr(module, "conditional", False))


__all__ = ["DCDiscriminator", "DCGenerator", "GAN_MODELS", "MLPDiscriminator", "MLPGenerator",
           "compute_dtype", "get_gan", "is_conditional", "torch_linear"]
