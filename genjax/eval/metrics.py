"""Sample-quality metrics on feature vectors: FID, KID, precision / recall, density / coverage.

Every function takes features `[N, D]` (real) and `[M, D]` (generated) from the same
extractor (`genjax.eval.classifier.features_and_probs`). The heavy parts (kernel sums,
pairwise distances) are jitted and run in fixed-size blocks so 10k-60k samples fit in memory
and compile once; the D x D algebra of FID runs in float64 NumPy.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# Full float32 products: JAX's default on recent GPUs rounds matmul operands to TF32 (10-bit
# mantissa); simulated on MNIST classifier features, that moves single k-NN radii by up to 3 %
# (CPU unaffected). The references (pytorch-fid, torch-fidelity, prdc) use full fp32 / fp64.
_HIGHEST = jax.lax.Precision.HIGHEST


def _check_features(x, what: str, min_rows: int = 2) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f"{what} must be float features [N, D], got {x.dtype} {x.shape}.")
  if x.shape[0] < min_rows:
    raise ValueError(f"{what}: {x.shape[0]} samples, at least {min_rows} needed.")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{what} contains NaN or inf.")
  return x


# ----------------------------------------------------------------------------------- FID
def gaussian_stats(features, what: str = "features") -> tuple[np.ndarray, np.ndarray]:
  """features [N, D] -> (mean [D], covariance [D, D]) in float64; `what` names the set in
  errors.

  Fewer samples than dimensions leave the covariance rank-deficient and FID meaningless, so
  that is an error rather than a silently biased number."""
  x = _check_features(features, what).astype(np.float64)
  n, d = x.shape
  if n < d:
    raise ValueError(f"{what}: {n} samples but {d} dimensions: FID needs at least "
                     f"as many samples as feature dimensions (use >= {d}; 10000 is usual).")
  return x.mean(axis=0), np.cov(x, rowvar=False)


def sqrtm_psd(a: np.ndarray) -> np.ndarray:
  """The PSD square root of a symmetric PSD matrix, via eigh (round-off negative eigenvalues
  clipped to 0), so the result is real and symmetric by construction."""
  a = (a + a.T) / 2
  w, v = np.linalg.eigh(a)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """||mu1-mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2).

  tr((S1 S2)^1/2) is computed as tr((R S2 R)^1/2) with R = S1^1/2: the same eigenvalues,
  but R S2 R is symmetric PSD, so `eigvalsh` applies and no complex round-off appears (the
  failure of `scipy.linalg.sqrtm` on the non-symmetric product)."""
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
    raise ValueError(f"Mismatched Gaussian statistics: means {mu1.shape} / {mu2.shape}, "
                     f"covariances {sigma1.shape} / {sigma2.shape}.")
  root1 = sqrtm_psd(sigma1)
  middle = root1 @ sigma2 @ root1
  tr_covmean = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)))
  value = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean
  return float(max(value, 0.0))  # Identical sets give -1e-12-ish round-off.


def fid(real_features, fake_features) -> float:
  """Fréchet distance between the Gaussians fitted to two feature sets."""
  return frechet_distance(*gaussian_stats(real_features, "real features"),
                          *gaussian_stats(fake_features, "generated features"))


# ----------------------------------------------------------------------------------- KID
@functools.partial(jax.jit, static_argnames=("subset_size", "num_subsets"))
def _kid_subsets(real, fake, key, subset_size: int, num_subsets: int) -> jax.Array:
  d = real.shape[1]

  def kernel(a, b):  # The cubic polynomial kernel of Binkowski et al. (2018).
    return (jnp.matmul(a, b.T, precision=_HIGHEST) / d + 1.0) ** 3

  def one(k):
    k_r, k_f = jax.random.split(k)
    x = real[jax.random.permutation(k_r, real.shape[0])[:subset_size]]  # [m, D]
    y = fake[jax.random.permutation(k_f, fake.shape[0])[:subset_size]]  # [m, D]
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    m = subset_size
    # Unbiased MMD^2: the diagonal (self-similarity) terms are left out.
    return ((kxx.sum() - jnp.trace(kxx)) / (m * (m - 1))
            + (kyy.sum() - jnp.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())

  return jax.lax.map(one, jax.random.split(key, num_subsets))


def kid(real_features, fake_features, *, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
  """Kernel Inception Distance: (mean, std) of the unbiased MMD^2 estimate with kernel
  (x.y/D + 1)^3 over `num_subsets` random subsets of `subset_size` (capped at the smaller
  set). Unbiased: its mean is ~0 (and can be negative) for two samples of one distribution."""
  real = _check_features(real_features, "real features")
  fake = _check_features(fake_features, "generated features")
  if real.shape[1] != fake.shape[1]:
    raise ValueError(f"Feature dimensions differ: {real.shape[1]} vs {fake.shape[1]}.")
  if subset_size < 2 or num_subsets < 1:  # m (m - 1) = 0, or no subsets: a NaN mean.
    raise ValueError(f"KID needs subset_size >= 2 and num_subsets >= 1, got {subset_size} "
                     f"and {num_subsets}.")
  m = min(subset_size, real.shape[0], fake.shape[0])
  values = np.asarray(_kid_subsets(jnp.asarray(real, jnp.float32),
                                   jnp.asarray(fake, jnp.float32),
                                   jax.random.PRNGKey(seed), m, num_subsets), np.float64)
  return float(values.mean()), float(values.std())


# ------------------------------------------------------------ precision / recall (k-NN)
def _sq_dists(a: jax.Array, b: jax.Array) -> jax.Array:
  """[A, D], [B, D] -> squared Euclidean distances [A, B]."""
  d = (jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None, :]
       - 2 * jnp.matmul(a, b.T, precision=_HIGHEST))
  return jnp.maximum(d, 0.0)


@functools.partial(jax.jit, static_argnames="k")
def _kth_block(block, points, k: int) -> jax.Array:
  """Squared distance from each block row to its k-th nearest neighbour in `points`; the
  row itself (distance 0) is neighbour 0."""
  neg, _ = jax.lax.top_k(-_sq_dists(block, points), k + 1)
  return -neg[:, k]


@jax.jit
def _ball_block(block, valid, centres, radii_sq):
  """For query rows `block` [b, D] against balls (centres [R, D], squared radii [R]):
  whether each row is inside some ball [b], how many balls hold it [b], and each ball's
  nearest valid query distance [R]."""
  d = _sq_dists(block, centres)                               # [b, R]
  inside = (d <= radii_sq[None, :]) & valid[:, None]
  nearest = jnp.min(jnp.where(valid[:, None], d, jnp.inf), axis=0)
  return inside.any(1), inside.sum(1), nearest


def _blocks(x: np.ndarray, block: int):
  """Yields (padded block [block, D], valid mask [block], true length)."""
  for start in range(0, x.shape[0], block):
    chunk = x[start:start + block]
    n = chunk.shape[0]
    pad = block - n
    yield (jnp.asarray(np.pad(chunk, ((0, pad), (0, 0)))), jnp.arange(block) < n, n)


def _check_knn(k: int, block: int) -> None:
  if k < 1 or block < 1:  # k = 0: every radius is the point's distance to itself.
    raise ValueError(f"k-NN metrics need k >= 1 and block >= 1, got k={k}, block={block}.")


def knn_radii_sq(features, k: int = 3, block: int = 1000) -> np.ndarray:
  """Squared distance of each point to its k-th nearest other point [N]."""
  _check_knn(k, block)
  x = _check_features(features, "features").astype(np.float32)
  if x.shape[0] <= k:
    raise ValueError(f"k-NN radii with k={k} need more than {k} points, got {x.shape[0]}.")
  block = min(block, x.shape[0])
  points = jnp.asarray(x)
  return np.concatenate([np.asarray(_kth_block(b, points, k))[:n]
                         for b, _, n in _blocks(x, block)])


def _balls(query: np.ndarray, centres: np.ndarray, radii_sq: np.ndarray, block: int):
  block = min(block, query.shape[0])
  c, r = jnp.asarray(centres), jnp.asarray(radii_sq)
  inside, counts, nearest = [], [], np.full(centres.shape[0], np.inf, np.float32)
  for b, valid, n in _blocks(query, block):
    i, cnt, near = jax.device_get(_ball_block(b, valid, c, r))
    inside.append(i[:n])
    counts.append(cnt[:n])
    nearest = np.minimum(nearest, near)
  return np.concatenate(inside), np.concatenate(counts), nearest


def precision_recall(real_features, fake_features, *, k: int = 3, block: int = 1000
                     ) -> dict[str, float]:
  """Improved precision / recall (Kynkäänniemi et al. 2019) and density / coverage
  (Naeem et al. 2020) with k-NN balls.

  precision: fraction of generated points inside the real manifold (the union of balls
    around real points reaching their k-th nearest real neighbour);
  recall: fraction of real points inside the generated manifold;
  density: mean number of real balls holding a generated point, divided by k (about 1 when
    the distributions match; can exceed 1);
  coverage: fraction of real balls holding at least one generated point."""
  _check_knn(k, block)
  real = _check_features(real_features, "real features", k + 1).astype(np.float32)
  fake = _check_features(fake_features, "generated features", k + 1).astype(np.float32)
  if real.shape[1] != fake.shape[1]:
    raise ValueError(f"Feature dimensions differ: {real.shape[1]} vs {fake.shape[1]}.")
  real_r, fake_r = knn_radii_sq(real, k, block), knn_radii_sq(fake, k, block)
  fake_in_real, counts, real_nearest_fake = _balls(fake, real, real_r, block)
  real_in_fake, _, _ = _balls(real, fake, fake_r, block)
  return {"precision": float(fake_in_real.mean()), "recall": float(real_in_fake.mean()),
          "density": float(counts.sum() / (k * fake.shape[0])),
          "coverage": float(np.mean(real_nearest_fake <= real_r))}
