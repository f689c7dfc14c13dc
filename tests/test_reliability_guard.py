"""The NaN/Inf guard: catches the first bad step on device, names the term, and leaves a
healthy run's numbers -- and a bad run's numbers before its bad step -- exactly as they were."""
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.train import guard, parallel


@flax.struct.dataclass
class ToyState:
  step: jax.Array
  params: jax.Array
  opt: jax.Array


def toy_step(bad_loss_at=-1, bad_grad_at=-1, huge_grad_at=-1):
  """Gradient descent on mean((p - x)^2); the loss turns NaN or the gradient Inf at a step,
  or the gradient turns huge (finite, its square overflowing `opt`, as Adam's nu would)."""

  def step(state, x):
    loss, grad = jax.value_and_grad(lambda p: jnp.mean((p - x) ** 2))(state.params)
    loss = jnp.where(state.step == bad_loss_at, jnp.nan, loss)
    grad = jnp.where(state.step == bad_grad_at, jnp.inf, grad)
    grad = jnp.where(state.step == huge_grad_at, 1e20, grad)
    new = state.replace(step=state.step + 1, params=state.params - 0.1 * grad,
                        opt=state.opt + grad ** 2)
    return new, {"loss": loss, "grad_max": jnp.max(jnp.abs(grad))}

  return step


def init():
  return ToyState(jnp.zeros((), jnp.int32), jnp.ones(3), jnp.zeros(3))


def run(step, xs, guarded):
  """One epoch of `step` over `xs` through the loop's own scan (the guarded path: per-step
  checks, then the epoch-end check of the optimizer states)."""
  return jax.jit(lambda s: parallel.scan_epoch(step, s, xs, guard=guarded))(init())


XS = jnp.linspace(-1.0, 1.0, 10 * 3).reshape(10, 3)


def test_healthy_run_is_bit_identical_with_the_guard():
  plain, _ = run(toy_step(), XS, guarded=False)
  guarded, metrics = run(toy_step(), XS, guarded=True)
  for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(guarded)):
    np.testing.assert_array_equal(a, b)
  assert int(metrics[guard.BAD_STEP_KEY]) == -1


@pytest.mark.parametrize("k", [0, 4, 9])
def test_nan_loss_is_caught_at_its_step_and_named(k):
  state, metrics = run(toy_step(bad_loss_at=k), XS, guarded=True)
  metrics, record = guard.split_record(jax.device_get(metrics))
  fault = guard.describe(record, guard.term_names(list(metrics), state))
  assert fault == (k, ["loss"], False)
  assert guard.fault_summary(fault, 1) == f"Non-finite loss at step {k} (epoch 1)"
  # Every step before the bad one is the clean run's, metric for metric.
  _, clean = run(toy_step(), XS, guarded=False)
  np.testing.assert_array_equal(metrics["loss"][:k], clean["loss"][:k])
  assert np.isnan(metrics["loss"][k])


def test_inf_gradient_is_named_by_the_parameters_it_reaches():
  state, metrics = run(toy_step(bad_grad_at=6), XS, guarded=True)
  metrics, record = guard.split_record(jax.device_get(metrics))
  fault = guard.describe(record, guard.term_names(list(metrics), state))
  # The optimizer state is bad too, but it is read only at the epoch's end, and the record
  # already holds step 6 by then: it keeps the first step and its terms.
  assert fault == (6, ["grad_max", "params"], False)
  assert not np.all(np.isfinite(state.params)) and not np.all(np.isfinite(state.opt))


def test_a_fault_only_the_optimizer_state_shows_is_found_at_the_epoch_end():
  state, metrics = run(toy_step(huge_grad_at=3), XS, guarded=True)
  assert np.all(np.isfinite(state.params)) and not np.all(np.isfinite(state.opt))
  metrics, record = guard.split_record(jax.device_get(metrics))
  fault = guard.describe(record, guard.term_names(list(metrics), state))
  assert fault == (len(XS) - 1, ["opt"], True)
  assert guard.fault_summary(fault, 2) == (
      "Non-finite opt found at the end of epoch 2 (after step 9; optimizer states are "
      "checked once per epoch, metrics and parameters every step)")


def test_the_per_step_check_does_not_read_optimizer_states():
  state = init().replace(opt=jnp.full(3, jnp.nan))
  assert int(guard.nonfinite_mask({}, state, optimizer_states=False)) == 0
  names = guard.term_names([], state)
  assert guard.describe({guard.BAD_STEP_KEY: 0, guard.BAD_TERMS_KEY:
                         guard.nonfinite_mask({}, state)}, names).terms == ["opt"]


def test_poison_batch_hits_only_its_step():
  seen = []
  poisoned = guard.poison_batch(lambda s, b: (s, b["image"]), 3)
  for i in range(5):
    _, image = poisoned(init().replace(step=jnp.int32(i)), {"image": jnp.ones(2)})
    seen.append(bool(np.isnan(image).any()))
  assert seen == [False, False, False, True, False]
