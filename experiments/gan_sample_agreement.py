"""How often the dataset's feature classifier (genjax/eval/classifier.py, ~99 % on MNIST test)
agrees with the label a class-conditional GAN was asked for: the label noise that
experiments/gan_augmentation.py feeds the downstream classifier. Uses the same samples as
that script (sampling.generate, key fold_in(PRNGKey(config.seed), EXPORT_KEY_TAG)).

  python experiments/gan_sample_agreement.py \
      --workdirs=runs/aug_gain/cgan_n100,runs/aug_gain/cgan_n1000
"""
import jax
import numpy as np
from absl import app, flags, logging

from genjax import sampling
from genjax.eval import classifier as classifier_lib
from genjax.train import loop

_WORKDIRS = flags.DEFINE_list("workdirs", None, "Trained cGAN work directories.")
_NUM = flags.DEFINE_integer("num", 10000, "Samples per work directory.")
flags.mark_flag_as_required("workdirs")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  for workdir in _WORKDIRS.value:
    config, setup, state = loop.load_trained(workdir)
    if not setup.task.conditional:
      raise ValueError(f"{workdir} holds a {config.model!r}, not a class-conditional GAN.")
    clf = classifier_lib.load(config.dataset)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), sampling.EXPORT_KEY_TAG)
    images, labels = sampling.generate(setup.task, state, key, _NUM.value)
    predicted = classifier_lib.features_and_probs(clf.params, images)[1].argmax(-1)
    per_class = [float(np.mean(predicted[labels == c] == c)) for c in range(10)]
    print(f"{workdir}: the {config.dataset} feature classifier agrees with the conditioning "
          f"label on {np.mean(predicted == labels):.4f} of {len(labels)} samples; per class "
          f"0..9: {' '.join(f'{v:.2f}' for v in per_class)}")


if __name__ == "__main__":
  app.run(main)
