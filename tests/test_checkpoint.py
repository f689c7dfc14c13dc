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
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
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
    assert 2 in ckpt.all_steps()  # The best survives although it is not among the last.


def test_restoring_into_another_architecture_is_a_clear_error(tmp_path):
  with Checkpointer(str(tmp_path)) as ckpt:
    ckpt.save(1, _state(1))
    other = _state(1)
    other["params"]["w"] = jnp.zeros((5, 4))
    with pytest.raises(CheckpointError, match=r"does not match this model's state .*"
                                              r"\(3, 4\).*\(5, 4\)"):
      ckpt.restore(abstract_like(other))


def test_empty_directory_says_so(tmp_path):
  with Checkpointer(str(tmp_path)) as ckpt:
    with pytest.raises(CheckpointError, match="No checkpoint in"):
      ckpt.restore(abstract_like(_state(0)))
