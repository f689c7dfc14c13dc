"""Generative augmentation: a classifier trained on few real labels, with and without
class-conditional GAN samples, and the accuracy gain.

Pure helpers for `experiments/gan_augmentation.py`: how real and generated examples are
mixed (`real_repeats`, `mix`), how the downstream classifier is fitted (`make_fit`: the feature
classifier's own `CNN` and scanned epoch from `genjax.eval.classifier`, for a fixed number of
steps so that both arms get the same optimisation budget) and how seeds are summarised.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax.eval import classifier as classifier_lib
from genjax.train.task import ModelState


def real_repeats(num_real: int, num_fake: int, real_fraction: float) -> int:
  """How many copies of the real set make it `real_fraction` of the mixed pool (at least 1).

  With 100 real and 10,000 generated images and real_fraction 0.5 the real images are
  repeated 100 times, so a batch holds as many real as generated examples on average
  instead of 1 %: the few real labels must not drown in samples of a weak generator."""
  if num_real < 1 or num_fake < 0:
    raise ValueError(f"Need >= 1 real and >= 0 generated examples, got {num_real} and "
                     f"{num_fake}.")
  if not 0.0 < real_fraction < 1.0:
    raise ValueError(f"real_fraction must lie in (0, 1), got {real_fraction}.")
  return max(1, round(real_fraction / (1.0 - real_fraction) * num_fake / num_real))


def mix(real_images: np.ndarray, real_labels: np.ndarray, fake_images: np.ndarray,
        fake_labels: np.ndarray, real_fraction: float) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [R*N+M,28,28,1], labels int32 [R*N+M]): the real set repeated
  R = `real_repeats(N, M, real_fraction)` times, then the M generated examples, each image
  with its own label (the classifier's epoch shuffles the pool)."""
  if real_images.shape[0] != real_labels.shape[0] or (
      fake_images.shape[0] != fake_labels.shape[0]):
    raise ValueError(f"Images and labels differ in number: real {real_images.shape[0]} vs "
                     f"{real_labels.shape[0]}, generated {fake_images.shape[0]} vs "
                     f"{fake_labels.shape[0]}.")
  if real_images.shape[1:] != fake_images.shape[1:] or real_images.dtype != fake_images.dtype:
    raise ValueError(f"Real images {real_images.dtype}{real_images.shape[1:]} and generated "
                     f"{fake_images.dtype}{fake_images.shape[1:]} differ in dtype or shape.")
  r = real_repeats(real_images.shape[0], fake_images.shape[0], real_fraction)
  images = np.concatenate([np.tile(real_images, (r, 1, 1, 1)), fake_images])
  labels = np.concatenate([np.tile(real_labels, r), fake_labels]).astype(np.int32)
  return images, labels


def make_fit(num_examples: int, *, steps: int, batch_size: int = 64,
             learning_rate: float = 1e-3, max_shift: int = 2
             ) -> tuple[Callable[[np.ndarray, np.ndarray, int], Any], int]:
  """(fit, steps taken) for pools of `num_examples` images: `fit(images uint8 [N,28,28,1],
  labels [N], seed) -> params of classifier.CNN`, Adam with cosine decay over whole epochs,
  as many as bring the step count nearest `steps`.

  The batch is `min(batch_size, N)` (a pool smaller than a batch is one step per epoch).
  One jitted epoch serves every seed, so seeds after the first cost no compilation."""
  if steps < 1:
    raise ValueError(f"steps must be >= 1, got {steps}.")
  batch_size = min(batch_size, num_examples)
  per_epoch = num_examples // batch_size
  epochs = max(1, round(steps / per_epoch))
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, epochs * per_epoch))
  epoch_fn = classifier_lib.make_epoch(tx, batch_size, max_shift)

  def fit(images: np.ndarray, labels: np.ndarray, seed: int) -> Any:
    if images.shape[0] != num_examples:
      raise ValueError(f"This fit was built for {num_examples} images, got "
                       f"{images.shape[0]}.")
    k_init, k_state = jax.random.split(jax.random.PRNGKey(seed))
    params = classifier_lib.init_params(k_init)
    state = ModelState(step=jnp.zeros((), jnp.int32), key=k_state, params=params,
                       opt=tx.init(params))
    images_d, labels_d = jnp.asarray(images), jnp.asarray(labels, jnp.int32)
    for _ in range(epochs):
      state, _ = epoch_fn(state, images_d, labels_d)
    return jax.device_get(state.params)

  return fit, epochs * per_epoch


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
  v = np.asarray(values, np.float64)
  return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def gain_row(num_real: int, real_acc: Sequence[float], aug_acc: Sequence[float]) -> dict:
  """One table row: accuracies per seed of both arms, and the gain paired by seed."""
  if len(real_acc) != len(aug_acc) or not real_acc:
    raise ValueError(f"Need the same number (>= 1) of seeds per arm, got {len(real_acc)} "
                     f"and {len(aug_acc)}.")
  gains = [a - r for r, a in zip(real_acc, aug_acc, strict=True)]
  return {"num_real": num_real, "real": mean_std(real_acc), "augmented": mean_std(aug_acc),
          "gain": mean_std(gains), "real_per_seed": list(real_acc),
          "augmented_per_seed": list(aug_acc)}


def markdown_table(rows: Sequence[dict]) -> str:
  """The gain table: test accuracy in %, mean ± std over seeds."""
  pct = lambda ms: f"{100 * ms[0]:.2f} ± {100 * ms[1]:.2f}"  # noqa: E731
  lines = ["| real labels | seeds | real only (%) | real + cGAN (%) | gain (points) |",
           "|---:|---:|---:|---:|---:|"]
  for r in rows:
    lines.append(f"| {r['num_real']} | {len(r['real_per_seed'])} | {pct(r['real'])} | "
                 f"{pct(r['augmented'])} | {100 * r['gain'][0]:+.2f} ± "
                 f"{100 * r['gain'][1]:.2f} |")
  return "\n".join(lines)


def epochs_for(steps: int, num_examples: int, batch_size: int) -> int:
  """Whole epochs of `num_examples // batch_size` steps that reach at least `steps`."""
  return max(1, math.ceil(steps / max(1, num_examples // batch_size)))
