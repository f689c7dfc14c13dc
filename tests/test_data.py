"""The data layer: embedded digits, IDX files, the TFDS path (mocked) and its errors."""
import gzip
import os
import re

import numpy as np
import pytest

from genjax import data
from tests.conftest import real_data_dir, run_python


def _write_idx_dataset(root, name="mnist", n=12, gz=True, split="train"):
  rng = np.random.RandomState(0)
  images = rng.randint(0, 256, (n, 28, 28), dtype=np.uint8)
  labels = rng.randint(0, 10, (n,), dtype=np.uint8)
  folder = os.path.join(root, name)
  os.makedirs(folder, exist_ok=True)
  prefix = "train" if split == "train" else "t10k"
  for kind, arr, dims in (("images", images, 3), ("labels", labels, 1)):
    path = os.path.join(folder, f"{prefix}-{kind}-idx{dims}-ubyte")
    raw = data.encode_idx(arr)
    if gz:
      with gzip.open(path + ".gz", "wb") as f:
        f.write(raw)
    else:
      with open(path, "wb") as f:
        f.write(raw)
  return images, labels


def test_digits_is_mnist_shaped_and_split():
  train, test = data.load("digits", "train"), data.load("digits", "test")
  assert train.images.shape == (1438, 28, 28, 1) and test.images.shape == (359, 28, 28, 1)
  assert train.images.dtype == np.uint8 and train.labels.dtype == np.int32
  assert train.images.max() == 255 and set(np.unique(train.labels)) == set(range(10))
  # The digit sits in the central 20x20 box, like MNIST; the border is black.
  assert train.images[:, :4].max() == 0 and train.images[:, 24:].max() == 0
  # Train and test are disjoint images.
  flat = {im.tobytes() for im in train.images}
  assert not any(im.tobytes() in flat for im in test.images)


def test_digits_are_scikit_learns_read_without_importing_it(monkeypatch):
  """The bundled file read directly gives `sklearn.datasets.load_digits()`'s arrays; where the
  file is not found, scikit-learn's loader is used and the split is the same."""
  from genjax.data import digits  # pylint: disable=import-outside-toplevel
  from sklearn import datasets  # pylint: disable=import-outside-toplevel

  bunch = datasets.load_digits()
  images, labels = digits._digits_8x8()  # pylint: disable=protected-access
  np.testing.assert_array_equal(images, bunch.images)
  np.testing.assert_array_equal(labels, bunch.target)
  direct = digits.load_digits("test")
  # In a fresh process (this one imported scikit-learn above): the file, not the package.
  code = ("import sys\nfrom genjax.data import digits\ndigits.load_digits('test')\n"
          "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))")
  assert run_python(code).stdout.split() == ["[]"]
  monkeypatch.setattr(digits, "_bundled_csv", lambda: None)
  for a, b in zip(direct, digits.load_digits("test"), strict=True):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_round_trip(tmp_path, gz):
  images, labels = _write_idx_dataset(tmp_path, gz=gz)
  ds = data.load("mnist", "train", data_dir=str(tmp_path))
  np.testing.assert_array_equal(ds.images[..., 0], images)
  np.testing.assert_array_equal(ds.labels, labels)


def test_data_dir_from_environment(tmp_path, monkeypatch):
  images, _ = _write_idx_dataset(tmp_path, name="fashion_mnist", split="test")
  monkeypatch.setenv(data.ENV_DATA_DIR, str(tmp_path))
  np.testing.assert_array_equal(data.load("fashion_mnist", "test").images[..., 0], images)


def test_malformed_idx_gets_clear_errors(tmp_path):
  with pytest.raises(data.IdxFormatError, match="bad magic number 0x00000903"):
    data.idx.parse_idx(bytes([0, 0, 9, 3]) + bytes(12))
  good = data.encode_idx(np.zeros((2, 28, 28), np.uint8))
  with pytest.raises(data.IdxFormatError, match="truncated or corrupt"):
    data.idx.parse_idx(good[:-5])
  _write_idx_dataset(tmp_path)
  path = os.path.join(tmp_path, "mnist", "train-images-idx3-ubyte.gz")
  with open(path, "wb") as f:
    f.write(b"not gzip at all")
  with pytest.raises(data.IdxFormatError, match="train-images-idx3-ubyte.gz"):
    data.load("mnist", "train", data_dir=str(tmp_path))


def test_unknown_dataset_split_and_source():
  with pytest.raises(ValueError, match="Unknown dataset 'cifar10'; known datasets: digits"):
    data.load("cifar10")
  with pytest.raises(ValueError, match="Unknown split 'validation'"):
    data.load("digits", "validation")
  with pytest.raises(ValueError, match="Unknown data source 'web'"):
    data.load("mnist", source="web")


def test_missing_data_dir_and_files_say_where(tmp_path):
  missing = str(tmp_path / "nope")
  with pytest.raises(data.DatasetNotFoundError, match=f"data dir '{missing}' does not exist"):
    data.load("mnist", data_dir=missing)
  with pytest.raises(data.DatasetNotFoundError,
                     match=r"no IDX file at .*kmnist/train-images-idx3-ubyte.gz"):
    data.load("kmnist", data_dir=str(tmp_path))


def test_tfds_path_with_mock_data():
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=7):
    ds = data.load("mnist", "train", source="tfds")
    source = tfds.data_source("mnist", split="train")  # The same mock records, read here.
    want = [source[i] for i in range(7)]
  assert ds.images.shape == (7, 28, 28, 1) and ds.images.dtype == np.uint8
  assert ds.labels.shape == (7,) and ds.labels.dtype == np.int32
  # Every record in order, each image with its own label (mock images are random draws).
  np.testing.assert_array_equal(ds.images, np.stack([r["image"] for r in want]))
  np.testing.assert_array_equal(ds.labels, [r["label"] for r in want])
  assert len({im.tobytes() for im in ds.images}) == 7


def test_tfds_failure_explains_offline_route(monkeypatch):
  def broken(*args, **kwargs):
    raise ConnectionError("no network")

  monkeypatch.setattr(data, "load_tfds", broken)
  monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
  with pytest.raises(data.DatasetNotFoundError, match="set \\$GENJAX_DATA_DIR"):
    data.load("mnist")


def test_real_mnist_files():
  path = real_data_dir()
  test = data.load("mnist", "test", data_dir=path)
  assert test.images.shape == (10000, 28, 28, 1)
  # The published class counts of the MNIST test set.
  assert np.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                               974, 1009]


def test_to_float_matches_tutorial_normalisation():
  x = np.array([0, 255, 127], np.uint8)
  np.testing.assert_allclose(data.to_float(x), [-1.0, 1.0, 127 / 127.5 - 1], atol=1e-7)


def _write_files(root, files, name="mnist"):
  folder = os.path.join(root, name)
  os.makedirs(folder, exist_ok=True)
  for filename, raw in files.items():
    with open(os.path.join(folder, filename), "wb") as f:
      f.write(raw)
  return str(root)


def test_gzip_is_told_by_content_not_by_name(tmp_path):
  """A file gunzipped but still named `.gz` (as some browsers save it), and a gzipped file
  named without `.gz`, both load."""
  images, labels = _write_idx_dataset(tmp_path, gz=False)
  folder = os.path.join(tmp_path, "mnist")
  os.rename(os.path.join(folder, "train-images-idx3-ubyte"),
            os.path.join(folder, "train-images-idx3-ubyte.gz"))
  with open(os.path.join(folder, "train-labels-idx1-ubyte"), "wb") as f:
    f.write(gzip.compress(data.encode_idx(labels)))
  ds = data.load("mnist", "train", data_dir=str(tmp_path))
  np.testing.assert_array_equal(ds.images[..., 0], images)
  np.testing.assert_array_equal(ds.labels, labels)


def test_corrupt_gzip_stream_names_the_file(tmp_path):
  """A damaged deflate stream makes zlib raise zlib.error, which is no OSError."""
  images = np.zeros((20, 28, 28), np.uint8)
  images[:, 8:20, 10:18] = 255
  raw = bytearray(gzip.compress(data.encode_idx(images)))
  raw[20:28] = bytes(8)
  path = os.path.join(_write_files(tmp_path, {"train-images-idx3-ubyte.gz": bytes(raw)}),
                      "mnist", "train-images-idx3-ubyte.gz")
  with pytest.raises(data.IdxFormatError, match=f"{re.escape(path)}: the gzip data is corrupt"):
    data.idx.read_idx(path)


def test_idx_header_errors_say_what_is_wrong():
  dims = (2).to_bytes(4, "big") * 3
  with pytest.raises(data.IdxFormatError, match="data type code 0x0d is float32; genjax reads"):
    data.idx.parse_idx(bytes([0, 0, 0x0D, 3]) + dims + bytes(32))
  with pytest.raises(data.IdxFormatError, match="2 dimensions; genjax reads 1-d label"):
    data.idx.parse_idx(bytes([0, 0, 8, 2]) + dims[:8] + bytes(4))
  # 2**31 * 2**31 * 4 wraps around to 0 in int64: a header promising no payload.
  huge = (2**31).to_bytes(4, "big") * 2 + (4).to_bytes(4, "big")
  with pytest.raises(data.IdxFormatError, match="truncated or corrupt"):
    data.idx.parse_idx(bytes([0, 0, 8, 3]) + huge)


@pytest.mark.parametrize("images, labels, bad, match", [
    (np.zeros((5, 28, 28)), np.zeros(4), "images", r" holds 5 images but .*labels.* holds 4"),
    (np.zeros((5, 28, 28)), np.array([0, 1, 12, 3, 4]), "labels", "must lie in 0..9, got 0..12"),
    (np.zeros((5, 32, 32)), np.zeros(5), "images", r"images of 28x28, got shape \(5, 32, 32\)"),
    (np.zeros((0, 28, 28)), np.zeros(0), "images", "expected N >= 1 images"),
])
def test_inconsistent_idx_files_name_the_file(tmp_path, images, labels, bad, match):
  root = _write_files(tmp_path, {"t10k-images-idx3-ubyte": data.encode_idx(images),
                                 "t10k-labels-idx1-ubyte": data.encode_idx(labels)})
  dims = 3 if bad == "images" else 1
  path = os.path.join(root, "mnist", f"t10k-{bad}-idx{dims}-ubyte")
  with pytest.raises(data.IdxFormatError, match=f"{re.escape(path)}.*{match}"):
    data.load("mnist", "test", data_dir=root)


def test_balanced_indices_of_no_labels_is_a_clear_error():
  with pytest.raises(ValueError, match="the split is empty"):
    data.balanced_indices(np.zeros(0, np.int32), 10)
