"""Latent priors of the VAEs: N(0, I), which they are trained with, or a Gaussian mixture
(here) or a RealNVP flow (`flow_prior`) fitted after training to the encoder's aggregate
posterior.

A VAE trained against N(0, I) leaves "holes": regions the prior covers that no image's
posterior q(z|x) reaches, and posterior mass where the prior is thin. Its log p(x) counts that
mismatch (the marginal KL(q(z) || p(z)) of Hoffman & Johnson's "ELBO surgery", 2016). Fitting
a density to q(z) = E_x q(z|x) after training, with the encoder and decoder frozen, gives a
second model p(x) = int p(x|z) r(z) dz with a better prior r: the "ex-post density
estimation" of Ghosh et al. (2020), the second stage of Dai & Wipf's two-stage VAE (2019),
and the fixed-pseudo-input end of Tomczak & Welling's VampPrior (2018). Its samples come from
r, and its importance-weighted bound keeps q(z|x) as the proposal with r in place of N(0, I).

`prior=None` everywhere means N(0, I). A mixture or a flow is a pytree of arrays (jit-able,
saved with `save` as .npz beside the run it was fitted to); the mixture's EM fit is
scikit-learn's, the flow's `flow_prior.fit`.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from typing import NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from genjax.models import flow_prior as flow_lib

_KEYS = ("log_weights", "means", "precision_cholesky")


class GaussianMixture(NamedTuple):
  """K full-covariance Gaussians over L latents. `precision_cholesky[k]` is the upper
  triangular P with precision P P^T (scikit-learn's `precisions_cholesky_`)."""
  log_weights: jax.Array  # [K]
  means: jax.Array  # [K, L]
  precision_cholesky: jax.Array  # [K, L, L]


Prior = Union[GaussianMixture, flow_lib.FlowPrior]


def describe(prior: Prior | None) -> str:
  """The prior in words, for results files."""
  if prior is None:
    return "standard normal"
  if isinstance(prior, flow_lib.FlowPrior):
    return f"realnvp flow, {prior.layers} coupling layers of {prior.hidden}"
  return f"gaussian mixture, K={len(prior.log_weights)}"


def log_prob(prior: Prior | None, z: jax.Array) -> jax.Array:
  """log r(z) over the last axis: [..., L] -> [...]; N(0, I) when `prior` is None."""
  if prior is None:
    return jax.scipy.stats.norm.logpdf(z).sum(-1)
  if isinstance(prior, flow_lib.FlowPrior):
    return flow_lib.log_prob(prior, z)
  latent_dim = prior.means.shape[-1]
  # (z - mu)^T P for every component: [..., K, L].
  y = (jnp.einsum("...l,klm->...km", z, prior.precision_cholesky)
       - jnp.einsum("kl,klm->km", prior.means, prior.precision_cholesky))
  log_det = jnp.sum(jnp.log(jnp.diagonal(prior.precision_cholesky, axis1=-2, axis2=-1)), -1)
  per_component = -0.5 * jnp.sum(y ** 2, -1) + log_det - 0.5 * latent_dim * math.log(2 * math.pi)
  return jax.nn.logsumexp(per_component + prior.log_weights, axis=-1)


def sample(prior: Prior | None, key: jax.Array, num: int, latent_dim: int) -> jax.Array:
  """`num` draws z ~ r: [num, latent_dim] (for N(0, I): jax.random.normal(key, ...))."""
  if prior is None:
    return jax.random.normal(key, (num, latent_dim))
  check(prior, latent_dim)
  if isinstance(prior, flow_lib.FlowPrior):
    return flow_lib.sample(prior, key, num)
  k_component, k_noise = jax.random.split(key)
  noise = jax.random.normal(k_noise, (num, latent_dim))
  component = jax.random.categorical(k_component, prior.log_weights, shape=(num,))
  chol = prior.precision_cholesky[component]  # [num, L, L], upper triangular
  # (z - mu)^T P = noise^T  <=>  P^T (z - mu) = noise, P^T lower triangular.
  offset = jax.scipy.linalg.solve_triangular(
      jnp.swapaxes(chol, -1, -2), noise[..., None], lower=True)[..., 0]
  return prior.means[component] + offset


def check(prior: Prior, latent_dim: int) -> None:
  """One clear error when the prior's arrays do not fit each other or the model."""
  if isinstance(prior, flow_lib.FlowPrior):
    flow_lib.check(prior, latent_dim)
    return
  shapes = {name: tuple(np.shape(value)) for name, value in zip(_KEYS, prior, strict=True)}
  k = shapes["log_weights"][0] if len(shapes["log_weights"]) == 1 else -1
  expected = {"log_weights": (k,), "means": (k, latent_dim),
              "precision_cholesky": (k, latent_dim, latent_dim)}
  if k < 1 or shapes != expected:
    raise ValueError(f"Gaussian-mixture prior does not fit a model with {latent_dim} latents: "
                     f"arrays {shapes}, expected {expected} for K components.")


def _check_mixture_values(prior: GaussianMixture) -> None:
  """What `log_prob` assumes of a mixture (scikit-learn's fits hold it): finite arrays,
  weights that sum to 1, each P upper triangular with a positive diagonal (its log is the
  log-determinant)."""
  log_weights, means, chol = (np.asarray(a, np.float64) for a in prior)
  problems = []
  if not all(np.isfinite(a).all() for a in (log_weights, means, chol)):
    problems.append("non-finite values")
  elif abs(np.exp(log_weights).sum() - 1.0) > 1e-4:
    problems.append(f"weights summing to {np.exp(log_weights).sum():.6g}, not 1")
  if np.any(np.tril(chol, -1)):
    problems.append("precision_cholesky not upper triangular")
  if np.any(np.diagonal(chol, axis1=-2, axis2=-1) <= 0):
    problems.append("precision_cholesky with a diagonal entry <= 0")
  if problems:
    raise ValueError(f"Gaussian-mixture prior with {', '.join(problems)}.")


def fit(z: np.ndarray, num_components: int, *, seed: int = 0, reg_covar: float = 1e-4,
        max_iter: int = 300) -> GaussianMixture:
  """EM fit (scikit-learn, full covariances, k-means start) of K Gaussians to samples
  z [N, L]; `reg_covar` is added to every covariance's diagonal."""
  # pylint: disable=import-outside-toplevel
  from sklearn.mixture import GaussianMixture as SklearnMixture

  z = np.asarray(z, np.float64)
  if z.ndim != 2 or len(z) < num_components:
    raise ValueError(f"fit needs z [N, L] with N >= {num_components} components, "
                     f"got shape {z.shape}.")
  mixture = SklearnMixture(num_components, covariance_type="full", reg_covar=reg_covar,
                           max_iter=max_iter, random_state=seed).fit(z)
  return GaussianMixture(log_weights=jnp.asarray(np.log(mixture.weights_), jnp.float32),
                         means=jnp.asarray(mixture.means_, jnp.float32),
                         precision_cholesky=jnp.asarray(mixture.precisions_cholesky_,
                                                        jnp.float32))


def mean_log_prob(prior: Prior | None, z: np.ndarray, batch: int = 4096) -> float:
  """Average log r(z) over samples z [N, L], in batches."""
  fn = jax.jit(lambda zb: log_prob(prior, zb).sum())
  total = sum(float(fn(jnp.asarray(z[i:i + batch], jnp.float32)))
              for i in range(0, len(z), batch))
  return total / len(z)


def fingerprint(params) -> str:
  """A short hash of a parameter pytree's values: ties a fitted prior to the exact encoder
  and decoder it was fitted to."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(jax.device_get(params)):
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()[:16]


def save(path: str, prior: Prior, **meta) -> None:
  """The prior's arrays and `meta` (JSON-able values, e.g. the checkpoint step) as .npz at
  exactly `path`, written to a temporary file first so a stop mid-write leaves the old one."""
  if isinstance(prior, flow_lib.FlowPrior):
    arrays = {f"flow/{name}": value for name, value in traverse_util.flatten_dict(
        jax.device_get(prior.params), sep="/").items()}
    shape = {"family": "realnvp", "layers": prior.layers, "hidden": prior.hidden}
  else:
    arrays = dict(zip(_KEYS, prior, strict=True))
    shape = {"family": "gaussian_mixture"}
  tmp = f"{path}.tmp"
  with open(tmp, "wb") as f:
    np.savez(f, **{name: np.asarray(value) for name, value in arrays.items()},
             meta=np.array(json.dumps(meta)), shape=np.array(json.dumps(shape)))
  os.replace(tmp, path)


def load(path: str) -> tuple[Prior, dict]:
  """(prior, meta) written by `save`; a file that is not one gets one error naming it."""
  try:
    with np.load(path) as data:
      # Files without 'shape' were written when the mixture was the only family.
      shape = json.loads(str(data["shape"])) if "shape" in data.files else {}
      meta = json.loads(str(data["meta"]))
      if shape.get("family") == "realnvp":
        params = traverse_util.unflatten_dict(
            {name[len("flow/"):]: jnp.asarray(data[name]) for name in data.files
             if name.startswith("flow/")}, sep="/")
        prior = flow_lib.FlowPrior(params, int(shape["layers"]), int(shape["hidden"]))
        latent_dim = prior.latent_dim
      else:
        prior = GaussianMixture(*(jnp.asarray(data[name], jnp.float32) for name in _KEYS))
        latent_dim = prior.means.shape[-1] if prior.means.ndim == 2 else -1
    check(prior, latent_dim)
    if isinstance(prior, GaussianMixture):
      _check_mixture_values(prior)
  except (OSError, KeyError, ValueError, IndexError, zipfile.BadZipFile) as e:
    raise ValueError(f"{path} is not a latent prior written by genjax ({e}).") from e
  return prior, meta


def select_and_fit(z: np.ndarray, candidates: list[int], *, heldout: int, seed: int = 0,
                   reg_covar: float = 1e-4) -> tuple[GaussianMixture, dict]:
  """The number of components chosen on held-out samples, then the mixture refitted on all.

  Each K in `candidates` is fitted to z minus its last `heldout` rows (shuffle z first if its
  order means anything) and scored by the mean log r of those rows; the best K is refitted on
  every row. Returns (mixture, {'heldout_log_prob': {K: score, 'standard_normal': score},
  'components': best K}).
  """
  if not candidates or min(candidates) < 1:
    raise ValueError(f"candidates must be positive component counts, got {candidates}.")
  if not 0 < heldout < len(z):
    raise ValueError(f"heldout={heldout} must leave samples on both sides of {len(z)}.")
  fit_part, held_part = z[:-heldout], z[-heldout:]
  scores = {str(k): mean_log_prob(fit(fit_part, k, seed=seed, reg_covar=reg_covar), held_part)
            for k in candidates}
  best = max(candidates, key=lambda k: scores[str(k)])
  scores["standard_normal"] = mean_log_prob(None, held_part)
  return fit(z, best, seed=seed, reg_covar=reg_covar), {"heldout_log_prob": scores,
                                                        "components": best}
