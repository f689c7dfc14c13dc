"""Time each convolution layer of genjax's conv models, forward and with gradients, in the
matmul forms of `genjax.models.conv` and as XLA's own convolutions, on this machine.

  python experiments/conv_layer_timing.py                       # batch 100, fp32 and bf16
  python experiments/conv_layer_timing.py --batch=64 --dtypes=float32 --out=runs/layers.md

Each row jits one layer on its own (flax module, random input of the model's shape at that
layer) and reports milliseconds per call, the mean of --calls calls after a compile; the
gradient is of sum(y^2) with respect to the parameters and the input. It is what chose the
matmul forms for CPUs (experiments/RESULTS.md, "Convolutions rewritten for XLA:CPU's
gradients"): a whole step's speed is what `bench.py` measures.
"""
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from genjax.bench import device_description
from genjax.models.conv import Conv, ConvTranspose

_BATCH = flags.DEFINE_integer("batch", 100, "Images per call.")
_DTYPES = flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "Compute dtypes.")
_CALLS = flags.DEFINE_integer("calls", 20, "Timed calls per number.")
_OUT = flags.DEFINE_string("out", "", "Optional markdown output path.")

# (name, module, its arguments, input [H, W, C]): the conv VAE's and DCGAN's layers.
LAYERS = [
    ("conv VAE enc 1->32 3x3 s2, 28", Conv, dict(features=32, kernel_size=(3, 3),
                                                  strides=(2, 2)), (28, 28, 1)),
    ("conv VAE enc 32->64 3x3 s2, 14", Conv, dict(features=64, kernel_size=(3, 3),
                                                   strides=(2, 2)), (14, 14, 32)),
    ("conv VAE dec T 64->64 3x3 s2, 7", ConvTranspose, dict(features=64, kernel_size=(3, 3),
                                                            strides=(2, 2)), (7, 7, 64)),
    ("conv VAE dec T 64->32 3x3 s2, 14", ConvTranspose, dict(features=32, kernel_size=(3, 3),
                                                             strides=(2, 2)), (14, 14, 64)),
    ("conv VAE dec 32->1 3x3, 28", Conv, dict(features=1, kernel_size=(3, 3)), (28, 28, 32)),
    ("DCGAN G T 256->128 4x4 s2, 7", ConvTranspose, dict(features=128, kernel_size=(4, 4),
                                                         strides=(2, 2)), (7, 7, 256)),
    ("DCGAN G T 128->64 4x4 s2, 14", ConvTranspose, dict(features=64, kernel_size=(4, 4),
                                                         strides=(2, 2)), (14, 14, 128)),
    ("DCGAN G 64->1 3x3, 28", Conv, dict(features=1, kernel_size=(3, 3)), (28, 28, 64)),
]


def milliseconds(fn, *args, calls: int) -> float:
  fn = jax.jit(fn)
  jax.block_until_ready(fn(*args))
  start = time.perf_counter()
  for _ in range(calls):
    jax.block_until_ready(fn(*args))
  return (time.perf_counter() - start) / calls * 1e3


def time_layer(module, x: jax.Array, calls: int) -> tuple[float, float]:
  """(forward ms, forward-and-gradients ms) of one layer."""
  variables = module.init(jax.random.PRNGKey(1), x)
  loss = lambda v, x: jnp.sum(jnp.square(module.apply(v, x).astype(jnp.float32)))
  return (milliseconds(module.apply, variables, x, calls=calls),
          milliseconds(jax.grad(loss, argnums=(0, 1)), variables, x, calls=calls))


def main(argv):
  del argv
  lines = [f"Device: {device_description()}; batch {_BATCH.value}; ms per call, mean of "
           f"{_CALLS.value}; jax {jax.__version__}.", "",
           "| layer | dtype | matmul forms: forward | with gradients | XLA conv: forward | "
           "with gradients |", "|---|---|---:|---:|---:|---:|"]
  for name, cls, args, shape in LAYERS:
    x = jax.random.normal(jax.random.PRNGKey(0), (_BATCH.value,) + shape)
    for dtype in _DTYPES.value:
      cells = []
      for impl in ("matmul", "xla"):
        cells += time_layer(cls(impl=impl, dtype=jnp.dtype(dtype), **args), x, _CALLS.value)
      lines.append(f"| {name} | {dtype} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
      print(lines[-1], flush=True)
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
  app.run(main)
