"""Export samples of a trained work directory for evaluation.

  python experiments/sample.py --workdir W --num N --out FILE.npz
writes `images` (uint8 [N,28,28,1], 0..255) and, for conditional models, `labels`.
"""
from absl import app, flags, logging

from genjax.sampling import export_samples

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained work directory.")
_NUM = flags.DEFINE_integer("num", 10000, "Number of samples.")
_OUT = flags.DEFINE_string("out", None, "Output .npz path.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every file operation at INFO.
  arrays = export_samples(_WORKDIR.value, _NUM.value, _OUT.value, seed=_SEED.value)
  print(f"Wrote {_OUT.value}: " + ", ".join(f"{k} {v.dtype}{list(v.shape)}"
                                             for k, v in arrays.items()))


if __name__ == "__main__":
  app.run(main)
