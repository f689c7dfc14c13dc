"""Which PyTorch baselines time which genjax model, and the per-model defaults of bench.py.

  mlp_gan  -> torch_tutorial, torch_resident, torch_resident_tuned   (.../torch_tutorial.py)
  dcgan    -> torch_dcgan                      (experiments/benchmarks/torch_models.py)
  vae_mlp  -> torch_vae_mlp,  vae_conv -> torch_vae_conv,  pixelcnn -> torch_pixelcnn
A baseline named for another model than the config's is refused with one error: a ratio of
two different models' steps/s means nothing; so is a config that trains its model otherwise
than the baseline does (`torch_tutorial.check_supported`, `torch_models._check_supported`).
torch is imported only by the selected modules.
"""
from __future__ import annotations

from typing import Callable, Sequence

from experiments.benchmarks import torch_models, torch_tutorial

MODEL_OF = {**{name: "mlp_gan" for name in torch_tutorial.BASELINES},
            **{f"torch_{m}": m for m in torch_models.MODELS}}


def names_for(model: str) -> list[str]:
  """The baselines that time `model` (its bench.py default), possibly none."""
  return [n for n, m in MODEL_OF.items() if m == model]


def select(config, names: Sequence[str] | None) -> dict[str, Callable]:
  """{name: fn(images_u8, *, batch_size, max_steps, device)} for `config`.

  Args:
    config: the genjax config being benchmarked (its model picks the baselines).
    names: baseline names; None: all of the config's model (possibly none); []: none.
  Raises:
    ValueError: an unknown name, a baseline of another model than config.model, or a config
      that trains otherwise than the baseline (another loss, a penalty, a moving average...).
  """
  if names is None:
    names = names_for(config.model)
  unknown = [n for n in names if n not in MODEL_OF]
  if unknown:
    raise ValueError(f"Unknown baselines {unknown}; known: {sorted(MODEL_OF)}.")
  wrong = [n for n in names if MODEL_OF[n] != config.model]
  if wrong:
    raise ValueError(
        f"Baselines {wrong} time {sorted({MODEL_OF[n] for n in wrong})}, not this config's "
        f"model {config.model!r}; its baselines: {names_for(config.model) or 'none'}.")
  out = {}
  for name in names:
    if MODEL_OF[name] == "mlp_gan":
      torch_tutorial.check_supported(config)
      out[name] = torch_tutorial.BASELINES[name]
    else:
      out.update(torch_models.baselines_for(config))
  return out
