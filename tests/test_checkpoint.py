"""The Orbax wrapper: round trip, keep-last / keep-best, mismatched state."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.checkpoint import CheckpointError, Checkpointer, abstract_like


def _state(seed):
  k = jax.random.PRNGKey(seed)
  return {"step": jnp.asarray(seed, jnp.int32), "key": k,
          "params": {"w": jax.random.normal(k, (3, 4)), "b": jnp.arange(4.0)},
          "opt": (jnp.zeros(()), {"mu": jnp.ones((3, 4), jnp.bfloat16)})}


def test_round_trip_is_exact(tmp_path):
  state = _state(3)
  with Checkpointer(str(tmp_path)) as ckpt:
    ckpt.save(10, state, meta={"epoch": 2})
    restored, meta = ckpt.restore(abstract_like(state))
  assert meta == {"epoch": 2}
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
    assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))


def test_keep_last_n(tmp_path):
  with Checkpointer(str(tmp_path), max_to_keep=2) as ckpt:
    for step in (1, 2, 3, 4):
      ckpt.save(step, _state(step))
    ckpt.wait()
    assert ckpt.all_steps() == [3, 4] and ckpt.latest_step() == 4
    restored, _ = ckpt.restore(abstract_like(_state(0)))
  assert int(restored["step"]) == 4


def test_keep_best_by_metric(tmp_path):
  with Checkpointer(str(tmp_path), max_to_keep=2, best_metric="fid", best_mode="min") as ckpt:
    for step, fid in ((1, 5.0), (2, 1.0), (3, 7.0), (4, 6.0)):
      ckpt.save(step, _state(step), metrics={"fid": fid})
    ckpt.wait()
    assert ckpt.all_steps() == [2, 3, 4]  # The best survives beside the last two.


@pytest.mark.parametrize("mode,best", [("min", 1), ("max", 5)])
def test_keep_best_never_drops_the_latest(tmp_path, mode, best):
  """A metric that only worsens (or only improves) must not cost the run its last steps."""
  with Checkpointer(str(tmp_path), max_to_keep=2, best_metric="g_loss", best_mode=mode) as c:
    for epoch in range(1, 6):
      c.save(10 * epoch, _state(epoch), meta={"epoch": epoch}, metrics={"g_loss": epoch})
    c.wait()
    assert c.all_steps() == sorted({10 * best, 40, 50})
    _, meta = c.restore(abstract_like(_state(0)))
  assert meta["epoch"] == 5


def test_a_misspelt_best_metric_is_named_at_the_first_save(tmp_path):
  with Checkpointer(str(tmp_path), best_metric="gloss") as ckpt:
    with pytest.raises(ValueError, match=r"'gloss' \(config.keep_best_metric\).*'g_loss'"):
      ckpt.save(1, _state(1), metrics={"g_loss": 1.0, "d_loss": 1.0})
    assert ckpt.all_steps() == []


def test_a_step_that_does_not_increase_is_an_error_not_a_skip(tmp_path):
  with Checkpointer(str(tmp_path)) as ckpt:
    ckpt.save(100, _state(1), meta={"epoch": 10})
    with pytest.raises(CheckpointError, match=r"did not save step 55.*latest step there is 100"):
      ckpt.save(55, _state(2), meta={"epoch": 11})
    ckpt.wait()
    assert ckpt.all_steps() == [100]


def test_keeping_no_checkpoint_is_refused(tmp_path):
  with pytest.raises(ValueError, match="max_to_keep must be >= 1"):
    Checkpointer(str(tmp_path), max_to_keep=0)


def test_restoring_into_another_architecture_is_a_clear_error(tmp_path):
  with Checkpointer(str(tmp_path)) as ckpt:
    ckpt.save(1, _state(1))
    other = _state(1)
    other["params"]["w"] = jnp.zeros((5, 4))
    with pytest.raises(CheckpointError, match=r"does not match this model's state .*"
                                              r"\(3, 4\).*\(5, 4\)"):
      ckpt.restore(abstract_like(other))


def test_restoring_into_a_state_with_more_leaves_after_the_saved_ones_names_the_counts(tmp_path):
  with Checkpointer(str(tmp_path)) as ckpt:
    ckpt.save(1, _state(1))
    longer = {**_state(1), "z_extra": jnp.zeros(())}  # Sorts last: the saved layout is a prefix.
    with pytest.raises(CheckpointError, match=r"does not match this model's state .*"
                                              r"checkpoint has 6 leaves, model has 7"):
      ckpt.restore(abstract_like(longer))


def test_empty_directory_says_so(tmp_path):
  with Checkpointer(str(tmp_path)) as ckpt:
    with pytest.raises(CheckpointError, match="No checkpoint in"):
      ckpt.restore(abstract_like(_state(0)))
