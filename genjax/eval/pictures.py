"""Pictures and tables shared by every experiment: sample grids, interpolation strips,
per-class grids, training curves (headless matplotlib) and markdown result tables."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from PIL import Image

from genjax.metric_writers import make_parent_dir


def to_uint8(images) -> np.ndarray:
  """float images in [-1, 1] (or uint8 already) -> uint8 0..255, same shape. NaN or Inf is
  an error: cast to uint8 it would show (and score) as a plausible black or white pixel."""
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images
  finite = np.isfinite(images)
  if not finite.all():
    bad = ~finite.reshape(len(images), -1).all(axis=1) if images.ndim > 1 else ~finite
    raise FloatingPointError(
        f"{int(bad.sum())} of {len(images)} images hold NaN or Inf values (first at index "
        f"{int(np.argmax(bad))}); refusing to convert them to uint8 pixels.")
  return np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def grid(images, ncol: int | None = None, pad: int = 2) -> np.ndarray:
  """[N,H,W,C] -> one uint8 image [rows*(H+pad)+pad, cols*(W+pad)+pad, C]."""
  images = to_uint8(images)
  n, h, w, c = images.shape
  ncol = ncol or int(math.ceil(math.sqrt(n)))
  nrow = int(math.ceil(n / ncol))
  out = np.zeros((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), np.uint8)
  for i in range(n):
    r, col = divmod(i, ncol)
    out[pad + r * (h + pad):pad + r * (h + pad) + h,
        pad + col * (w + pad):pad + col * (w + pad) + w] = images[i]
  return out


def save_grid(images, path: str, ncol: int | None = None, scale: int = 2) -> str:
  return save_image(grid(images, ncol), path, scale)


def save_curves(records: Sequence[Mapping[str, float]], keys: Sequence[str], path: str,
                x_key: str = "epoch", title: str = "") -> str:
  """Line plot of `keys` against `x_key` from a list of metric records."""
  # A bare Figure renders without pyplot, so no global backend is switched: a notebook's
  # inline plots keep working after training.
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel

  fig = Figure(figsize=(6, 3.5))
  ax = fig.subplots()
  for key in keys:
    pts = [(r[x_key], r[key]) for r in records if key in r and x_key in r]
    if pts:
      ax.plot(*zip(*pts), label=key)
  ax.set_xlabel(x_key)
  ax.legend()
  ax.grid(alpha=0.3)
  if title:
    ax.set_title(title)
  fig.tight_layout()
  make_parent_dir(path)
  fig.savefig(path, dpi=100)
  return path


def interpolation_strip(images, steps: int) -> np.ndarray:
  """Rows of an interpolation: images [rows*steps, H, W, C] (row-major, each row one path
  from its first to its last frame) -> one grid image with `steps` columns."""
  images = to_uint8(images)
  if steps < 2 or images.shape[0] % steps:
    raise ValueError(f"An interpolation strip needs steps >= 2 dividing the {images.shape[0]}"
                     f" frames, got steps={steps}.")
  return grid(images, ncol=steps)


def linear_path(z0, z1, steps: int) -> np.ndarray:
  """Latents [steps, D] on the straight line from z0 to z1 (both [D]), ends included."""
  t = np.linspace(0.0, 1.0, steps)[:, None]
  return (1 - t) * np.asarray(z0)[None] + t * np.asarray(z1)[None]


def per_class_grid(images, labels, num_classes: int = 10, per_class: int = 8) -> np.ndarray:
  """One row per class of a conditional model's samples: the first `per_class` images of
  each label; short rows are left black."""
  images, labels = to_uint8(images), np.asarray(labels)
  if labels.shape != (images.shape[0],):
    raise ValueError(f"{images.shape[0]} images but labels of shape {labels.shape}.")
  h, w, c = images.shape[1:]
  rows = np.zeros((num_classes, per_class, h, w, c), np.uint8)
  for k in range(num_classes):
    chosen = images[labels == k][:per_class]
    rows[k, :len(chosen)] = chosen
  return grid(rows.reshape(-1, h, w, c), ncol=per_class)


def save_image(image: np.ndarray, path: str, scale: int = 2) -> str:
  """Saves one uint8 [H, W, C] image (e.g. from `grid`) as PNG."""
  img = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  if scale > 1:
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
  make_parent_dir(path)
  img.save(path)
  return path


def markdown_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None,
                   digits: int = 4) -> str:
  """Rows of results -> a GitHub markdown table; floats to `digits` significant digits,
  missing cells empty."""
  columns = list(columns or dict.fromkeys(k for r in rows for k in r))

  def cell(v):
    if v is None:
      return ""
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)

  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
  return "\n".join(lines) + "\n"
