"""Pictures shared by every experiment: sample grids and training curves (headless)."""
from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import numpy as np
from PIL import Image


def to_uint8(images) -> np.ndarray:
  """float images in [-1, 1] (or uint8 already) -> uint8 0..255, same shape."""
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images
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
  g = grid(images, ncol)
  img = Image.fromarray(g[..., 0] if g.shape[-1] == 1 else g)
  if scale > 1:
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  img.save(path)
  return path


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
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  return path
