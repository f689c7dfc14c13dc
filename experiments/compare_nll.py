"""Two test-NLL evaluations compared image by image (a paired difference).

  python experiments/nll.py --workdir=runs/a --per_image --out=a.json
  python experiments/nll.py --workdir=runs/b --per_image --out=b.json
  python experiments/compare_nll.py --a=a.json --b=b.json
  # an evaluation run in parts: give all its parts on its side
  python experiments/compare_nll.py --a=a0.json,a1.json --b=b0.json,b1.json --out=ab.json

Both evaluations must binarise the test set alike: same --seed and --batch_size of nll.py,
and one model family (a VAE and a PixelCNN draw the binary images from the key differently:
compare those two by their nll_nats and sem_nats, unpaired). For two VAEs evaluated with the
same k and chunk the z draws are shared too. The mean difference over the images both scored
(NLL_A - NLL_B; negative: A is better) has a much smaller standard error than either mean
alone, because image-to-image spread cancels.
Prints, and writes to --out if given: the number of images, each side's mean NLL over them,
the mean difference, its standard error and the share of images whose NLL A lowers.
"""
from absl import app, flags

from genjax import metric_writers
from genjax.eval import likelihood as lik

_A = flags.DEFINE_list("a", [], "The --per_image JSON(s) of evaluation A (its parts).")
_B = flags.DEFINE_list("b", [], "The --per_image JSON(s) of evaluation B (its parts).")
_OUT = flags.DEFINE_string("out", "", "Optional JSON output path.")


def compare(paths_a: list[str], paths_b: list[str]) -> dict:
  """{'a', 'b' (the files), 'num_images', 'nll_a', 'nll_b', 'mean_nats', 'sem_nats',
  'frac_lower'} of evaluation A against B."""
  return {"a": paths_a, "b": paths_b,
          **lik.paired_difference(lik.read_parts(paths_a), lik.read_parts(paths_b))}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not _A.value or not _B.value:
    raise app.UsageError("Give both --a and --b (nll.py --per_image JSON files).")
  metric_writers.report(compare(_A.value, _B.value), _OUT.value)


if __name__ == "__main__":
  app.run(main)
