"""Log-likelihoods of images: binarisation, Bernoulli log-probabilities, the importance-
weighted bound and unit conversions (nats per image <-> bits per dimension).

The importance-weighted (IWAE) bound of Burda et al. (2016):
  log p(x) >= L_k(x) = log (1/k) sum_k exp(log p(x, z_k) - log q(z_k | x)),  z_k ~ q(z | x).
L_1 is the ELBO (in expectation), L_k rises with k and tends to log p(x). With k = 5000 the
log-weights of one batch do not fit in memory at once, so `iw_log_likelihood` draws them in
chunks and combines the chunks' logsumexp in a `lax.scan`.
"""
from __future__ import annotations

import json
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax.data import to_float

LN2 = math.log(2.0)


def nats_to_bits_per_dim(nats, num_dims: int):
  """Negative log-likelihood per image in nats -> bits per pixel (dimension)."""
  if num_dims < 1:
    raise ValueError(f"num_dims must be >= 1, got {num_dims}.")
  return nats / (num_dims * LN2)


def bits_per_dim_to_nats(bits, num_dims: int):
  """Bits per pixel -> negative log-likelihood per image in nats."""
  if num_dims < 1:
    raise ValueError(f"num_dims must be >= 1, got {num_dims}.")
  return bits * num_dims * LN2


def to_unit(images: jax.Array) -> jax.Array:
  """[-1, 1] (the loop's batches) -> [0, 1] intensities."""
  return jnp.clip((images + 1.0) * 0.5, 0.0, 1.0)


def binarize(key: jax.Array, images: jax.Array) -> jax.Array:
  """Dynamic binarisation: x ~ Bernoulli(intensity) per pixel, images in [-1, 1] -> {0, 1}
  float32 of the same shape. A fresh draw each step is a regulariser (Salakhutdinov &
  Murray 2008); a fixed key gives a fixed binarised test set."""
  return jax.random.bernoulli(key, to_unit(images)).astype(jnp.float32)


def bernoulli_log_prob(logits: jax.Array, x: jax.Array) -> jax.Array:
  """log p(x | logits) summed over all but the first axis: [B, ...] -> [B]."""
  per_pixel = -optax.sigmoid_binary_cross_entropy(logits, x)
  return per_pixel.reshape(per_pixel.shape[0], -1).sum(-1)


def gaussian_log_prob(mean: jax.Array, log_scale: jax.Array, x: jax.Array) -> jax.Array:
  """Diagonal Normal log-density summed over all but the first axis: [B, ...] -> [B]."""
  per_dim = jax.scipy.stats.norm.logpdf(x, mean, jnp.exp(log_scale))
  return per_dim.reshape(per_dim.shape[0], -1).sum(-1)


def logmeanexp(x: jax.Array, axis: int = 0) -> jax.Array:
  return jax.nn.logsumexp(x, axis=axis) - jnp.log(x.shape[axis])


def iw_log_likelihood(log_weights_fn: Callable[[jax.Array, int], jax.Array], key: jax.Array,
                      num_samples: int, chunk: int) -> jax.Array:
  """The importance-weighted bound L_k, k = `num_samples`, per example: [B].

  Args:
    log_weights_fn: (key, n) -> log p(x, z) - log q(z | x) for n fresh z per example, [n, B].
    key: PRNG key; chunk i uses fold_in(key, i).
    num_samples: k.
    chunk: samples drawn per chunk (bounds memory); must divide k.
  """
  if num_samples < 1 or chunk < 1 or num_samples % chunk:
    raise ValueError(f"iw samples k={num_samples} must be a positive multiple of the chunk "
                     f"size {chunk} (config.iw_samples / config.iw_chunk).")

  def body(acc, i):  # acc: running logsumexp [B]
    lw = log_weights_fn(jax.random.fold_in(key, i), chunk)
    return jnp.logaddexp(acc, jax.nn.logsumexp(lw, axis=0)), None

  probe = jax.eval_shape(lambda: log_weights_fn(key, chunk))
  acc0 = jnp.full(probe.shape[1:], -jnp.inf, jnp.float32)
  acc, _ = jax.lax.scan(body, acc0, jnp.arange(num_samples // chunk))
  return acc - jnp.log(float(num_samples))


def evaluate_dataset(log_likelihood_fn: Callable, state, images_u8: np.ndarray,
                     key: jax.Array, batch_size: int = 100, first_batch: int = 0) -> np.ndarray:
  """log p(x) in nats for every image, in fixed-shape jitted batches (the last one padded).

  Args:
    log_likelihood_fn: (state, images f32[B,H,W,C] in [-1,1], key) -> f32[B]; jitted here.
    images_u8: uint8 [N, H, W, C].
    key: batch i uses fold_in(key, first_batch + i), so a fixed key gives a fixed
      binarisation, and images[j * batch_size:] evaluated with first_batch=j get the values
      a whole-split evaluation gives them (an evaluation split over several runs).
  """
  fn = jax.jit(log_likelihood_fn)
  n = images_u8.shape[0]
  out = []
  for i, start in enumerate(range(0, n, batch_size)):
    batch = images_u8[start:start + batch_size]
    pad = batch_size - batch.shape[0]
    if pad:
      batch = np.concatenate([batch, np.repeat(batch[-1:], pad, axis=0)])
    batch_key = jax.random.fold_in(key, first_batch + i)
    ll = np.asarray(jax.device_get(fn(state, to_float(batch), batch_key)))
    out.append(ll[:batch_size - pad])
  return np.concatenate(out)


def check_prior_family(config) -> None:
  """A latent prior belongs to a VAE: one error naming any other family."""
  if config.family != "vae":
    raise ValueError(f"A latent prior applies to a VAE, not to config.family="
                     f"{config.family!r}.")


def get_log_likelihood_fn(config, *, iw_samples: int | None = None, prior=None) -> Callable:
  """(state, images in [-1,1], key) -> log p(x) [B] in nats for a 'vae' (importance-
  weighted bound with k = iw_samples, default config.iw_samples; latent prior N(0, I) or the
  `genjax.models.latent_prior` mixture or flow `prior`) or 'pixelcnn' (exact)."""
  # pylint: disable=import-outside-toplevel
  if prior is not None:
    check_prior_family(config)
  if config.family == "vae":
    from genjax.train.vae import make_log_likelihood

    return make_log_likelihood(config, iw_samples or config.iw_samples, prior)
  if config.family == "pixelcnn":
    from genjax.train.pixelcnn import make_log_likelihood

    return make_log_likelihood(config)
  raise ValueError(f"config.family={config.family!r} has no likelihood; use 'vae' or "
                   "'pixelcnn'.")


def trained_log_likelihood_fn(config, state, *, iw_samples: int | None = None,
                              latent_prior: str = "") -> tuple[Callable, str]:
  """(`get_log_likelihood_fn`'s function, a description of p(z) for results) of a trained
  run `state`: a VAE scores under the fitted prior file `latent_prior` if given, else under
  the prior it trained against (config.latent_prior), else N(0, I)."""
  from genjax.train.vae import model_prior  # pylint: disable=import-outside-toplevel

  prior, prior_name = model_prior(latent_prior, config, state)
  return get_log_likelihood_fn(config, iw_samples=iw_samples, prior=prior), prior_name


def check_discrete_likelihood(config) -> None:
  """A test NLL is a likelihood of the 8-bit data only for a discrete model: one error for a
  VAE with a continuous decoder (config.likelihood other than 'bernoulli')."""
  if config.family == "vae" and config.likelihood != "bernoulli":
    raise ValueError(f"config.likelihood={config.likelihood!r} is a density of continuous [0, 1] "
                     "intensities without dequantisation, not a likelihood of the 8-bit data: "
                     "its nats and bits/dim do not compare with the Bernoulli figures (they can "
                     "be negative). Evaluate a config.likelihood='bernoulli' run.")


def standard_error(values) -> float:
  """The standard error of the mean of `values`: their sample standard deviation (ddof 1)
  over sqrt(n); NaN for fewer than two values, whose spread is unknown."""
  values = np.asarray(values, np.float64)
  if values.size < 2:
    return float("nan")
  return float(values.std(ddof=1) / np.sqrt(values.size))


def nll_summary(log_likelihoods, num_dims: int) -> dict:
  """Per-image log p(x) in nats -> {'nll_nats' (mean NLL), 'sem_nats' (its standard error
  over images, `standard_error`), 'bits_per_dim'}."""
  ll = np.asarray(log_likelihoods, np.float64)
  nll = float(-ll.mean())
  return {"nll_nats": nll, "sem_nats": standard_error(ll),
          "bits_per_dim": float(nats_to_bits_per_dim(nll, num_dims))}


_SHARED_KEYS = ("workdir", "step", "iw_samples", "iw_chunk", "seed", "batch_size", "num_dims",
                "params", "latent_prior")
# What fixes each test image's binarisation (and, for equal k and chunk, a VAE's z draws):
# two evaluations pair image by image only where these agree, and their families too.
_PAIRING_KEYS = ("dataset", "seed", "batch_size", "num_dims")
# Each likelihood model's family (genjax.models.vae.get_vae, genjax.models.pixelcnn.MODELS):
# per-image files written before nll.py recorded 'family' name only the 'model'.
MODEL_FAMILIES = {"vae_mlp": "vae", "vae_conv": "vae", "vae_gated": "vae",
                  "pixelcnn": "pixelcnn", "gated_pixelcnn": "pixelcnn"}


def model_family(result: dict) -> str | None:
  """The model family of an nll.py result: its 'family', else that of its 'model', else None."""
  return result.get("family") or MODEL_FAMILIES.get(result.get("model"))


def _ordered_parts(parts: list[dict], who: str = "merge_parts") -> list[dict]:
  """Parts of one evaluation, checked (same shared keys, disjoint ranges), sorted by start."""
  if not parts:
    raise ValueError(f"{who}: no parts given.")
  # Files written before these keys existed scored the last parameters under N(0, I).
  parts = [{"params": "last", "latent_prior": "standard normal", **part,
            "family": model_family(part)} for part in parts]
  for part in parts:
    missing = [k for k in (*_SHARED_KEYS, "start", "log_likelihoods") if k not in part]
    if missing:
      raise ValueError(f"{who}: a part lacks {missing} (write parts with --per_image).")
    differing = [k for k in (*_SHARED_KEYS, "family") if part[k] != parts[0][k]]
    if differing:
      raise ValueError(f"{who}: parts differ in {differing}: "
                       f"{[(k, parts[0][k], part[k]) for k in differing]}.")
  ordered = sorted(parts, key=lambda p: p["start"])
  ranges = _ranges(ordered)
  for (_, end), (start, _) in zip(ranges, ranges[1:]):
    if start < end:
      raise ValueError(f"{who}: test ranges overlap: {ranges}.")
  return ordered


def _ranges(ordered: list[dict]) -> list[tuple[int, int]]:
  return [(p["start"], p["start"] + len(p["log_likelihoods"])) for p in ordered]


def read_parts(paths: list[str]) -> list[dict]:
  """The per-image results (`nll.py --per_image` JSON files) at `paths`."""
  parts = []
  for path in paths:
    with open(path) as f:
      parts.append(json.load(f))
  return parts


def indexed_log_likelihoods(parts: list[dict], who: str = "merge_parts"):
  """Parts of one evaluation -> (test-image indices int[N], their log p(x) float64[N])."""
  return _indexed(_ordered_parts(parts, who))


def _indexed(ordered: list[dict]):
  index = np.concatenate([np.arange(a, b) for a, b in _ranges(ordered)])
  return index, np.concatenate([np.asarray(p["log_likelihoods"], np.float64) for p in ordered])


def merge_parts(parts: list[dict]) -> dict:
  """Per-image results of disjoint test ranges -> one result over their union.

  Each part is a dict with 'start' (first test image), 'log_likelihoods' (per image) and the
  keys that must agree for the parts to be one evaluation: 'workdir', 'step', 'iw_samples',
  'iw_chunk', 'seed', 'batch_size', 'num_dims', 'params' (absent: 'last'), 'latent_prior'
  (absent: 'standard normal') and the model family ('family', else derived from 'model';
  unchecked where neither names it). Overlapping ranges or disagreeing keys raise one error
  naming them. Returns {'start', 'num_test', 'nll_nats', 'sem_nats', 'bits_per_dim',
  'contiguous'}, the shared keys and 'family' where known.
  """
  ordered = _ordered_parts(parts)
  ranges = _ranges(ordered)
  _, ll = _indexed(ordered)
  contiguous = all(end == start for (_, end), (start, _) in zip(ranges, ranges[1:]))
  family = ordered[0]["family"]
  return {**{k: ordered[0][k] for k in _SHARED_KEYS}, **({"family": family} if family else {}),
          "start": ranges[0][0], "num_test": int(len(ll)), "contiguous": contiguous,
          **nll_summary(ll, ordered[0]["num_dims"])}


def check_same_family(family_a: str | None, family_b: str | None) -> None:
  """Two evaluations pair only within a model family (unchecked where one is unknown): one
  error naming the two families otherwise."""
  if family_a and family_b and family_a != family_b:
    raise ValueError(f"paired_difference: A is a {family_a!r} evaluation and B a {family_b!r} "
                     "one; the families draw each test image's binarisation from the batch key "
                     "differently (a VAE from split(key)[0], a PixelCNN from the key itself), so "
                     "image i is a different binary image on each side. Compare their nll_nats "
                     "and sem_nats unpaired.")


def paired_difference(parts_a: list[dict], parts_b: list[dict]) -> dict:
  """NLL of evaluation A minus that of B, image by image, over the test images both scored.

  Each side is the per-image parts of one evaluation (as for `merge_parts`). The two must
  binarise the test set alike: same 'seed', 'batch_size', 'num_dims' and, where both name
  them, 'dataset' and model family ('family', or derived from 'model'); otherwise "image i"
  would be two different binary images. Returns {'num_images', 'first_image', 'last_image'
  (of the shared test images), 'mean_nats' (negative: A is better), 'sem_nats' (standard
  error of that mean over images), 'frac_lower' (share of images whose NLL is lower under A),
  'nll_a', 'nll_b' (each side's mean NLL over the shared images)}.
  """
  index_a, ll_a = indexed_log_likelihoods(parts_a, "paired_difference, side A")
  index_b, ll_b = indexed_log_likelihoods(parts_b, "paired_difference, side B")
  a, b = parts_a[0], parts_b[0]
  check_same_family(model_family(a), model_family(b))
  differing = [k for k in _PAIRING_KEYS if k in a and k in b and a[k] != b[k]]
  if differing:
    raise ValueError(f"paired_difference: the two evaluations binarise the test set "
                     f"differently ({[(k, a[k], b[k]) for k in differing]}); their images do "
                     f"not pair.")
  shared, in_a, in_b = np.intersect1d(index_a, index_b, return_indices=True)
  if not len(shared):
    raise ValueError(f"paired_difference: no test image is in both evaluations (A: "
                     f"{len(index_a)} images from {index_a.min()}, B: {len(index_b)} from "
                     f"{index_b.min()}).")
  diff = ll_b[in_b] - ll_a[in_a]  # NLL_A - NLL_B
  return {"num_images": int(len(shared)), "first_image": int(shared[0]),
          "last_image": int(shared[-1]), "mean_nats": float(diff.mean()),
          "sem_nats": standard_error(diff),
          "frac_lower": float((diff < 0).mean()), "nll_a": float(-ll_a[in_a].mean()),
          "nll_b": float(-ll_b[in_b].mean())}
