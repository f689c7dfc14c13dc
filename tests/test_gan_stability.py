"""The stability study's pieces: the MLP GAN's loss/stabiliser options and the D-wins rule."""
import numpy as np
import pytest

from experiments.configs.mlp_gan import get_config
from genjax.eval.stability import d_wins, summary


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
