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


def run(step, xs, check):
  """One epoch of `step` over `xs` through the loop's own scan; `check` None: unguarded, else
  the guarded path (per-step checks of `check`, then the epoch-end check of everything)."""
  return jax.jit(lambda s: parallel.scan_epoch(step, s, xs, guard=check))(init())


XS = jnp.linspace(-1.0, 1.0, 10 * 3).reshape(10, 3)


@pytest.mark.parametrize("check", guard.CHECKS)
def test_healthy_run_is_bit_identical_with_the_guard(check):
  plain, _ = run(toy_step(), XS, None)
  guarded, metrics = run(toy_step(), XS, check)
  for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(guarded), strict=True):
    np.testing.assert_array_equal(a, b)
  assert int(metrics[guard.BAD_STEP_KEY]) == -1


@pytest.mark.parametrize("k", [0, 4, 9])
def test_nan_loss_is_caught_at_its_step_and_named(k):
  state, metrics = run(toy_step(bad_loss_at=k), XS, "parameters")
  metrics, record = guard.split_record(jax.device_get(metrics))
  fault = guard.describe(record, guard.term_names(list(metrics), state))
  assert fault == (k, ["loss"], False)
  assert guard.fault_summary(fault, 1, "parameters") == f"Non-finite loss at step {k} (epoch 1)"
  # Every step before the bad one is the clean run's, metric for metric.
  _, clean = run(toy_step(), XS, None)
  np.testing.assert_array_equal(metrics["loss"][:k], clean["loss"][:k])
  assert np.isnan(metrics["loss"][k])


def test_inf_gradient_is_named_by_the_parameters_it_reaches():
  state, metrics = run(toy_step(bad_grad_at=6), XS, "parameters")
  metrics, record = guard.split_record(jax.device_get(metrics))
  fault = guard.describe(record, guard.term_names(list(metrics), state))
  # The optimizer state is bad too, but it is read only at the epoch's end, and the record
  # already holds step 6 by then: it keeps the first step and its terms.
  assert fault == (6, ["grad_max", "params"], False)
  assert not np.all(np.isfinite(state.params)) and not np.all(np.isfinite(state.opt))


def loss_only(step):
  """`step` reporting only its loss, as the training steps do (no gradient metric)."""
  def stepped(state, x):
    state, metrics = step(state, x)
    return state, {"loss": metrics["loss"]}
  return stepped


@pytest.mark.parametrize("k", [0, 9])
def test_metrics_check_catches_a_nan_loss_at_its_step(k):
  state, metrics = run(loss_only(toy_step(bad_loss_at=k)), XS, "metrics")
  metrics, record = guard.split_record(jax.device_get(metrics))
  assert guard.describe(record, guard.term_names(list(metrics), state)) == (k, ["loss"], False)


def test_metrics_check_names_a_bad_gradient_as_the_next_loss_or_at_the_epoch_end():
  """The cheaper check reads no parameter per step: an Inf gradient at step 6 is named at
  step 7, as that step's loss (the parameters it reached enter step 7's forward pass); at the
  epoch's last step, by the epoch-end check of the whole state."""
  state, metrics = run(loss_only(toy_step(bad_grad_at=6)), XS, "metrics")
  metrics, record = guard.split_record(jax.device_get(metrics))
  fault = guard.describe(record, guard.term_names(list(metrics), state))
  assert fault == (7, ["loss"], False)
  assert guard.fault_summary(fault, 1, "metrics") == (
      "Non-finite loss at step 7 (epoch 1); config.nan_check='metrics' reads only the losses "
      "each step, so they also show a non-finite gradient of step 6 (nan_check='parameters' "
      "names such a fault at its own step)")
  state, metrics = run(loss_only(toy_step(bad_grad_at=9)), XS, "metrics")
  metrics, record = guard.split_record(jax.device_get(metrics))
  assert guard.describe(record, guard.term_names(list(metrics), state)) == (
      9, ["params", "opt"], True)
  # The same fault under the 'parameters' check: named at its own step by the parameters.
  state, metrics = run(loss_only(toy_step(bad_grad_at=6)), XS, "parameters")
  metrics, record = guard.split_record(jax.device_get(metrics))
  assert guard.describe(record, guard.term_names(list(metrics), state)) == (6, ["params"], False)


def test_an_unknown_check_is_named():
  with pytest.raises(ValueError, match="NaN check 'gradients'"):
    guard.guard_step(toy_step(), "gradients")


def test_a_fault_only_the_optimizer_state_shows_is_found_at_the_epoch_end():
  state, metrics = run(toy_step(huge_grad_at=3), XS, "parameters")
  assert np.all(np.isfinite(state.params)) and not np.all(np.isfinite(state.opt))
  metrics, record = guard.split_record(jax.device_get(metrics))
  fault = guard.describe(record, guard.term_names(list(metrics), state))
  assert fault == (len(XS) - 1, ["opt"], True)
  assert guard.fault_summary(fault, 2, "parameters") == (
      "Non-finite opt found at the end of epoch 2 (after step 9; the whole state is checked "
      "once per epoch, what config.nan_check names every step)")


def test_the_per_step_check_does_not_read_optimizer_states():
  state = init().replace(opt=jnp.full(3, jnp.nan))
  assert int(guard.nonfinite_mask({}, state, "parameters")) == 0
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
