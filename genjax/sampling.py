"""Sample export: a trained work directory -> `images` uint8 [N,28,28,1] (and `labels`)."""
from __future__ import annotations

import jax
import numpy as np

from genjax.data import NUM_CLASSES
from genjax.eval.pictures import to_uint8
from genjax.train import ema as ema_lib
from genjax.train.loop import load_trained

EXPORT_KEY_TAG = 0xE4907


def generate(task, state, key: jax.Array, num: int, batch_size: int = 1000
             ) -> tuple[np.ndarray, np.ndarray | None]:
  """`num` samples as uint8, in fixed-size jitted batches; labels cycle 0..9 when the task
  is conditional. A non-finite sample is an error: as uint8 it would be scored as black."""
  sample = jax.jit(task.sample, static_argnums=2)
  labels = np.arange(num) % NUM_CLASSES if task.conditional else None
  out = []
  for i, start in enumerate(range(0, num, batch_size)):
    n = min(batch_size, num - start)
    batch_labels = None if labels is None else jax.numpy.asarray(labels[start:start + n])
    images = np.asarray(jax.device_get(
        sample(state, jax.random.fold_in(key, i), n, batch_labels)))
    try:
      out.append(to_uint8(images))
    except FloatingPointError as e:
      raise FloatingPointError(f"The model's samples {start}..{start + n - 1}: {e}") from None
  return np.concatenate(out), labels


def export_samples(workdir: str, num: int, out: str, seed: int = 0, ema: bool = True,
                   latent_prior: str = "") -> dict:
  """Writes `num` samples of the latest checkpoint in `workdir` to the .npz file `out`; with
  `ema=False` from the last parameters even where the run keeps a moving average; a VAE's
  z from the prior file `latent_prior` (experiments/fit_prior.py) instead of N(0, I)."""
  if num < 1:
    raise ValueError(f"--num must be >= 1, got {num}.")
  config, setup, state = load_trained(workdir)
  state = ema_lib.choose(state, ema)
  task = setup.task
  if latent_prior:
    from genjax.train import vae  # pylint: disable=import-outside-toplevel

    decode = vae.make_prior_sampler(config, vae.model_prior(latent_prior, config, state)[0])
    task = task._replace(sample=lambda state, key, num, labels=None: decode(state, key, num))
  key = jax.random.fold_in(jax.random.PRNGKey(seed), EXPORT_KEY_TAG)
  images, labels = generate(task, state, key, num)
  arrays = {"images": images} if labels is None else {"images": images,
                                                      "labels": labels.astype(np.int32)}
  np.savez_compressed(out, **arrays)
  return arrays
