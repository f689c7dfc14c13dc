"""The feature classifier: a small CNN per dataset whose features and softmax feed the metrics.

No Inception weights can be downloaded here, so FID / KID / precision-recall are computed in
the penultimate feature space of an in-project classifier (the practice of MNIST-scale GAN
papers). One architecture serves every dataset:

  x [B,28,28,1] in [-1,1] -> conv5x5/2(16) relu -> conv5x5/2(32) relu -> flatten [B,1568]
    -> dense(128) relu = features [B,128] -> dropout -> dense(10) logits

Training is a jitted `lax.scan` epoch over the device-resident split (Adam with cosine
decay, light random-shift augmentation). A trained classifier is one `Checkpointer` step
whose meta records the dataset, so a classifier of another dataset is refused by name.
"""
from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax import data as data_lib
from genjax.checkpoint import Checkpointer, CheckpointMismatchError, abstract_like
from genjax.train.parallel import shuffled_batches
from genjax.train.task import ModelState

ENV_CACHE_DIR = "GENJAX_CACHE_DIR"
ARCH = "patchcnn16s2-32s2-128"  # Stored in the checkpoint meta; bump when the module changes.
FEATURE_DIM = 128
AUGMENT_TAG = 0xA06


class ClassifierNotFoundError(FileNotFoundError):
  """No trained classifier where evaluation looked for one."""


class ClassifierMismatchError(ValueError):
  """A classifier checkpoint of another dataset or architecture."""


def patches(x: jax.Array, size: int, stride: int) -> jax.Array:
  """im2col with SAME padding: [B,H,W,C] -> [B,ceil(H/s),ceil(W/s),size*size*C]."""
  _, h, w, _ = x.shape
  ho, wo = -(-h // stride), -(-w // stride)
  pad_h, pad_w = max((ho - 1) * stride + size - h, 0), max((wo - 1) * stride + size - w, 0)
  x = jnp.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2),
                  (0, 0)))
  return jnp.concatenate([x[:, i:i + stride * (ho - 1) + 1:stride,
                            j:j + stride * (wo - 1) + 1:stride]
                          for i in range(size) for j in range(size)], axis=-1)


class PatchConv(nn.Module):
  """A convolution written as im2col + Dense. XLA:CPU runs `conv` ops inside a `lax.scan`
  body about 10x slower than outside it (measured here: 0.86 s vs 0.08 s per step), while
  the same layer as slices + matmul runs at full speed in the scanned epoch."""
  features: int
  size: int
  stride: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return nn.Dense(self.features)(patches(x, self.size, self.stride))


class CNN(nn.Module):
  """images [B,28,28,1] in [-1,1] -> (features [B,128], logits [B,10])."""
  num_classes: int = data_lib.NUM_CLASSES
  dropout_rate: float = 0.3

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    if x.ndim != 4 or tuple(x.shape[1:]) != data_lib.IMAGE_SHAPE:
      raise ValueError(f"CNN expects images [batch, 28, 28, 1], got {tuple(x.shape)}.")
    # Strided 5x5 convolutions instead of conv + max-pool: 5x cheaper at the same accuracy
    # class, and the classifier must train in minutes on 2 CPU cores.
    x = nn.relu(PatchConv(16, 5, 2)(x))                   # [B, 14, 14, 16]
    x = nn.relu(PatchConv(32, 5, 2)(x))                   # [B, 7, 7, 32]
    x = x.reshape((x.shape[0], -1))                       # [B, 1568]
    features = nn.relu(nn.Dense(FEATURE_DIM)(x))          # [B, 128]
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(features)
    return features, nn.Dense(self.num_classes)(h)


class Classifier(NamedTuple):
  """A trained classifier: `params` of `CNN()` and the dataset it was trained on."""
  params: Any
  dataset: str
  meta: dict


def default_dir(dataset: str) -> str:
  """`$GENJAX_CACHE_DIR/classifiers/<dataset>`, else `~/.cache/genjax/classifiers/<dataset>`."""
  root = os.environ.get(ENV_CACHE_DIR) or os.path.join(os.path.expanduser("~"), ".cache",
                                                        "genjax")
  return os.path.join(root, "classifiers", dataset)


def train_command(dataset: str, directory: str | None = None) -> str:
  """The shell command that makes the classifier evaluation is missing."""
  cmd = f"python experiments/train_classifier.py --dataset {dataset}"
  if directory and os.path.abspath(directory) != os.path.abspath(default_dir(dataset)):
    cmd += f" --workdir {directory}"
  return cmd


def init_params(key: jax.Array) -> Any:
  return CNN().init(key, jnp.zeros((1,) + data_lib.IMAGE_SHAPE, jnp.float32))


def _shift(images: jax.Array, key: jax.Array, max_shift: int) -> jax.Array:
  """Random translation by up to `max_shift` pixels per image; the digits' black border
  makes a wrap-around roll indistinguishable from a zero-padded shift."""
  shifts = jax.random.randint(key, (images.shape[0], 2), -max_shift, max_shift + 1)
  return jax.vmap(lambda im, s: jnp.roll(im, s, axis=(0, 1)))(images, shifts)


def make_epoch(tx: optax.GradientTransformation, batch_size: int, max_shift: int
               ) -> Callable:
  """Jitted `epoch(state, images_u8 [N,28,28,1], labels [N]) -> (state, metrics[steps])`."""
  model = CNN()

  def step(state: ModelState, batch: tuple[jax.Array, jax.Array]):
    images, labels = batch
    k_aug, k_drop = jax.random.split(jax.random.fold_in(state.key, state.step))
    x = data_lib.to_float(images)
    if max_shift:
      x = _shift(x + 1.0, k_aug, max_shift) - 1.0  # Roll in background (-1), not zeros.

    def loss_fn(params):
      _, logits = model.apply(params, x, train=True, rngs={"dropout": k_drop})
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, jnp.mean(jnp.argmax(logits, -1) == labels)

    (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt, state.params)
    state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params,
                                                                          updates),
                          opt=opt_state)
    return state, {"loss": loss, "accuracy": acc}

  def epoch(state, images, labels):
    index = shuffled_batches(state.key, state.step, images.shape[0], batch_size)
    return jax.lax.scan(lambda s, idx: step(s, (images[idx], labels[idx])), state, index)

  return jax.jit(epoch, donate_argnums=0)


@jax.jit
def _apply(params, x_u8: jax.Array) -> tuple[jax.Array, jax.Array]:
  features, logits = CNN().apply(params, data_lib.to_float(x_u8))
  return features, jax.nn.softmax(logits)


def features_and_probs(params: Any, images: np.ndarray, batch_size: int = 1000
                       ) -> tuple[np.ndarray, np.ndarray]:
  """uint8 images [N,28,28,1] -> (features f32 [N,128], class probabilities f32 [N,10]).

  Fixed-size batches (the last one padded) so a whole split compiles once."""
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or not images.shape[0]:
    # Float images in [-1, 1] would pass through `to_float` again, silently, as all-black.
    raise ValueError(f"The classifier takes uint8 images [N>=1, 28, 28, 1] (0..255), got "
                     f"{images.dtype} {images.shape} (floats in [-1, 1]: "
                     "genjax.eval.pictures.to_uint8 converts them).")
  n = images.shape[0]
  feats, probs = [], []
  for start in range(0, n, batch_size):
    chunk = images[start:start + batch_size]
    pad = batch_size - chunk.shape[0] if n > batch_size else 0
    if pad:
      chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
    f, p = jax.device_get(_apply(params, jnp.asarray(chunk)))
    feats.append(f[:f.shape[0] - pad])
    probs.append(p[:p.shape[0] - pad])
  return np.concatenate(feats), np.concatenate(probs)


def accuracy(params: Any, images: np.ndarray, labels: np.ndarray) -> float:
  _, probs = features_and_probs(params, images)
  return float(np.mean(np.argmax(probs, -1) == np.asarray(labels)))


def default_max_shift(dataset: str) -> int:
  """Shift augmentation by dataset: digits sit on a black border, so a wrap-around roll of 2
  pixels is a plausible digit; Fashion-MNIST garments fill the frame and a roll would wrap
  them around, so it gets none."""
  return 0 if dataset == "fashion_mnist" else 2


def train(dataset: str, directory: str, *, epochs: int = 8, batch_size: int = 128,
          learning_rate: float = 1e-3, max_shift: int | None = None, max_train: int = 0,
          seed: int = 0, data_dir: str | None = None, log: Callable[[str], None] = print
          ) -> Classifier:
  """Trains the classifier of `dataset`, saves it in `directory` and returns it.

  `max_train` > 0 keeps only the first `max_train` training images (for tests);
  `max_shift` None means `default_max_shift(dataset)`."""
  if max_shift is None:
    max_shift = default_max_shift(dataset)
  train_split = data_lib.load(dataset, "train", data_dir=data_dir)
  test_split = data_lib.load(dataset, "test", data_dir=data_dir)
  images, labels = train_split.images, train_split.labels
  if max_train:
    images, labels = images[:max_train], labels[:max_train]
  batch_size = min(batch_size, images.shape[0])
  steps = images.shape[0] // batch_size
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, epochs * steps))
  k_init, k_state = jax.random.split(jax.random.PRNGKey(seed))
  params = init_params(k_init)
  state = ModelState(step=jnp.zeros((), jnp.int32), key=k_state, params=params,
                     opt=tx.init(params))
  epoch_fn = make_epoch(tx, batch_size, max_shift)
  images_d, labels_d = jnp.asarray(images), jnp.asarray(labels, jnp.int32)
  for epoch in range(1, epochs + 1):
    state, metrics = epoch_fn(state, images_d, labels_d)
    m = {k: float(np.mean(v)) for k, v in jax.device_get(metrics).items()}
    log(f"{dataset} classifier epoch {epoch}/{epochs}: loss {m['loss']:.4f}, "
        f"train accuracy {m['accuracy']:.4f}")
  params = jax.device_get(state.params)
  test_acc = accuracy(params, test_split.images, test_split.labels)
  log(f"{dataset} classifier test accuracy {test_acc:.4f} on {len(test_split.labels)} images")
  meta = {"dataset": dataset, "arch": ARCH, "test_accuracy": test_acc, "epochs": epochs,
          "num_train": int(images.shape[0]), "seed": seed,
          "max_shift": max_shift}
  with Checkpointer(directory, max_to_keep=1) as ckpt:
    ckpt.save(int(state.step), params, meta=meta)
    ckpt.wait()
  return Classifier(params, dataset, meta)


def load(dataset: str, directory: str | None = None) -> Classifier:
  """The trained classifier of `dataset` from `directory` (default: `default_dir`).

  Raises ClassifierNotFoundError naming the command that makes one, and
  ClassifierMismatchError for a classifier of another dataset or architecture."""
  directory = directory or default_dir(dataset)
  how = f"Train one with: {train_command(dataset, directory)}"
  retrain = (f"Move {directory} aside (train_classifier.py refuses a used folder), then: "
             f"{train_command(dataset, directory)}")
  if not os.path.isdir(directory):
    raise ClassifierNotFoundError(f"No {dataset} feature classifier in {directory}. {how}")
  with Checkpointer(directory, max_to_keep=1) as ckpt:
    if ckpt.latest_step() is None:
      raise ClassifierNotFoundError(
          f"{directory} holds no classifier checkpoint for {dataset}. {how}")
    try:
      params, meta = ckpt.restore(abstract_like(init_params(jax.random.PRNGKey(0))))
    except CheckpointMismatchError as e:  # Other parameter shapes: meta is never reached.
      raise ClassifierMismatchError(
          f"The checkpoint in {directory} is not a {dataset} classifier of architecture "
          f"{ARCH!r} ({e}). {retrain}") from e
  if meta.get("dataset") != dataset:
    raise ClassifierMismatchError(
        f"The classifier in {directory} was trained on {meta.get('dataset')!r}, not "
        f"{dataset!r}: its features would not describe {dataset}. {retrain}")
  if meta.get("arch") != ARCH:
    raise ClassifierMismatchError(
        f"The classifier in {directory} has architecture {meta.get('arch')!r}, this genjax "
        f"expects {ARCH!r}. {retrain}")
  return Classifier(params, dataset, meta)
