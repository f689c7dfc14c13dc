"""Copying genjax (flax) parameters into torch modules, for the torch-equivalence tests.
Imported only by test files that already skip without torch."""
import numpy as np
import torch


def conv(w):  # flax kernel [kh, kw, in, out] -> torch [out, in, kh, kw]
  return torch.from_numpy(np.array(w)).permute(3, 2, 0, 1).contiguous()


def dense(w):  # flax kernel [in, out] -> torch weight [out, in]
  return torch.from_numpy(np.array(w)).T.contiguous()


def vec(b):
  return torch.from_numpy(np.array(b))


def load(module, tensors):
  """Copies `tensors` into `module.parameters()`, in order, shapes checked."""
  with torch.no_grad():
    for p, t in zip(module.parameters(), tensors, strict=True):
      assert p.shape == t.shape
      p.copy_(t)


def dense_stack(tree, n: int):
  """[weight, bias] of flax Dense_0..Dense_{n-1}, in torch's parameter order."""
  return [t for i in range(n) for t in (dense(tree[f"Dense_{i}"]["kernel"]),
                                        vec(tree[f"Dense_{i}"]["bias"]))]
