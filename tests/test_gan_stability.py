"""The stability study's pieces: the MLP GAN's loss/stabiliser options and the D-wins rule."""
import numpy as np
import pytest

from experiments.configs.mlp_gan import get_config
from genjax.eval.stability import d_wins, summary
from tests.conftest import run_python


def test_mlp_gan_options_set_loss_and_stabilisers():
  c = get_config("mnist,ls,r1,ttur,ada")
  assert (c.dataset, c.loss, c.r1_gamma, c.ada) == ("mnist", "least_squares", 1.0, True)
  assert (c.lr_g, c.lr_d) == (1e-4, 4e-4)
  plain = get_config("mnist")
  assert (plain.loss, plain.r1_gamma, plain.ada, plain.lr_g) == ("non_saturating", 0.0, False,
                                                               2e-4)


@pytest.mark.parametrize("arg, match", [("mnist,sn", "Unknown mlp_gan config options"),
                                        ("ls,hinge", "Choose one loss option"),
                                        ("mnist,r2", "Unknown mlp_gan config options")])
def test_mlp_gan_bad_options_raise(arg, match):
  with pytest.raises(ValueError, match=match):
    get_config(arg)


def test_d_wins_reads_the_end_of_the_epoch():
  falling = np.concatenate([np.full(900, 1.2), np.full(100, 0.002)])
  won, tail, low = d_wins(falling, threshold=0.01, tail_frac=0.1)
  assert won and tail == pytest.approx(0.002) and low == pytest.approx(0.002)
  # A dip that recovers is not a win, but the running minimum records it.
  dip = np.concatenate([np.full(400, 1.2), np.full(100, 0.001), np.full(500, 1.0)])
  won, tail, low = d_wins(dip, threshold=0.01, tail_frac=0.1)
  assert not won and tail == pytest.approx(1.0) and low == pytest.approx(0.001)


def test_summary_counts_wins_per_variant():
  runs = [{"variant": "plain", "d_wins": w, "tail_d_loss": t, "fid": f, "class_coverage": 1.0}
          for w, t, f in ((True, 0.001, 50.0), (False, 1.0, 30.0), (True, 0.002, 70.0))]
  (row,) = summary(runs)
  assert (row["seeds"], row["d_wins"], row["fid_median"]) == (3, 2, 50.0)
  assert row["fid_mean"] == pytest.approx(50.0)


def test_run_record_is_what_summary_counts():
  from genjax.eval.stability import run_record  # pylint: disable=import-outside-toplevel
  losses = np.concatenate([np.full(90, 1.0), np.full(10, 0.004)])
  record = run_record("plain", 3, losses, threshold=0.01, tail_frac=0.1)
  assert record == {"variant": "plain", "seed": 3, "d_wins": True,
                    "tail_d_loss": pytest.approx(0.004), "min_running_d_loss": pytest.approx(
                        np.convolve(losses, np.ones(50) / 50, "valid").min()),
                    "final_d_loss": pytest.approx(0.004)}
  (row,) = summary([record])
  assert (row["seeds"], row["d_wins"]) == (1, 1)


def test_summary_fid_std_is_the_sample_std_over_seeds():
  runs = [{"variant": "plain", "d_wins": False, "tail_d_loss": 1.0, "fid": f,
           "class_coverage": 1.0} for f in (30.0, 50.0, 70.0)]
  (row,) = summary(runs)
  assert row["fid_std"] == pytest.approx(20.0)  # ddof 1; the population std was 16.33.
  (one,) = summary(runs[:1])
  assert one["fid_std"] == 0.0


def _stability(tmp_path, *flags):
  empty = tmp_path / "no_data"  # Any data load fails: the checks must come before it.
  empty.mkdir()
  return run_python(["experiments/gan_stability.py", "--seeds=1", "--fid_samples=0", *flags],
                    env={"GENJAX_DATA_DIR": str(empty)}, check=False)


def test_gan_stability_names_a_bad_variant_before_any_work(tmp_path):
  proc = _stability(tmp_path, "--variants=plain,r2")
  assert proc.returncode != 0
  assert "--variants: 'r2': Unknown mlp_gan config options ['r2']" in proc.stderr
  assert "DatasetNotFoundError" not in proc.stderr


def test_gan_stability_makes_the_out_folder_before_any_work(tmp_path):
  out = tmp_path / "new" / "sub" / "stability.json"
  proc = _stability(tmp_path, "--variants=plain", f"--out={out}")
  assert proc.returncode != 0 and "DatasetNotFoundError" in proc.stderr  # The data load...
  assert out.parent.is_dir()  # ...comes after the folder (it failed at the end, hours on).


def test_gan_gradients_records_this_run_s_date_and_device(tmp_path):
  import datetime  # pylint: disable=import-outside-toplevel
  from tests.conftest import run_python  # pylint: disable=import-outside-toplevel
  results = tmp_path / "results.md"
  run_python(["experiments/gan_gradients.py", "--dataset=digits", "--d_steps=0",
              f"--results={results}"])
  text = results.read_text()
  assert f"Date: {datetime.date.today()}." in text  # Was always 2026-11-23...
  assert "Device: cpu x1 (" in text  # ...and "CPU, 2 cores (shared)", wherever it ran.
  assert "| 0 | 0.4" in text  # D steps 0: D(G(z)) of an untrained D, 0.499 in RESULTS.md.


def test_a_diverged_seed_scores_nan_not_black_images():
  # A process of its own: the script's absl flags clash with gan_quality's in one process.
  proc = run_python(
      "import numpy as np, types\n"
      "from experiments import gan_stability\n"
      "task = types.SimpleNamespace(sample=lambda s, k, n: np.full((n, 28, 28, 1), np.nan))\n"
      "print(gan_stability.quality(task, None, None, None, num=4, seed=3))")
  assert proc.stdout.strip() == "{'fid': nan, 'class_coverage': nan}"
  assert "Scoring seed 3 as NaN: 4 of 4 images hold NaN" in proc.stderr
