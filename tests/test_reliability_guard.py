"""The NaN/Inf guard: catches the first bad step on device, names the term, and leaves a
healthy run's numbers -- and a bad run's numbers before its bad step -- exactly as they were."""
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.train import guard


@flax.struct.dataclass
class ToyState:
  step: jax.Array
  params: jax.Array
  opt: jax.Array


def toy_step(bad_loss_at=-1, bad_grad_at=-1):
  """Gradient descent on mean((p - x)^2); the loss or the gradient turns NaN at a step."""

  def step(state, x):
    loss, grad = jax.value_and_grad(lambda p: jnp.mean((p - x) ** 2))(state.params)
    loss = jnp.where(state.step == bad_loss_at, jnp.nan, loss)
    grad = jnp.where(state.step == bad_grad_at, jnp.inf, grad)
    new = state.replace(step=state.step + 1, params=state.params - 0.1 * grad,
                        opt=state.opt + grad ** 2)
    return new, {"loss": loss, "grad_norm": jnp.linalg.norm(grad)}

  return step


def init():
  return ToyState(jnp.zeros((), jnp.int32), jnp.ones(3), jnp.zeros(3))


def run(step, xs, guarded):
  if not guarded:
    return jax.jit(lambda s: jax.lax.scan(step, s, xs))(init())
  (state, rec), metrics = jax.jit(
      lambda s: jax.lax.scan(guard.guard_step(step), (s, guard.healthy()), xs))(init())
  return state, {**metrics, guard.BAD_STEP_KEY: rec.bad_step,
                 guard.BAD_TERMS_KEY: rec.bad_terms}


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
  step, terms = guard.describe(record, guard.term_names(list(metrics), state))
  assert (step, terms) == (k, ["loss"])
  # Every step before the bad one is the clean run's, metric for metric.
  _, clean = run(toy_step(), XS, guarded=False)
  np.testing.assert_array_equal(metrics["loss"][:k], clean["loss"][:k])
  assert np.isnan(metrics["loss"][k])


def test_inf_gradient_is_named_by_the_state_it_reaches():
  state, metrics = run(toy_step(bad_grad_at=6), XS, guarded=True)
  metrics, record = guard.split_record(jax.device_get(metrics))
  step, terms = guard.describe(record, guard.term_names(list(metrics), state))
  assert step == 6 and terms == ["grad_norm", "params", "opt"]
  # Later bad steps do not move the record: it keeps the first.
  assert int(record[guard.BAD_STEP_KEY]) == 6 and not np.all(np.isfinite(state.params))


def test_poison_batch_hits_only_its_step():
  seen = []
  poisoned = guard.poison_batch(lambda s, b: (s, b["image"]), 3)
  for i in range(5):
    _, image = poisoned(init().replace(step=jnp.int32(i)), {"image": jnp.ones(2)})
    seen.append(bool(np.isnan(image).any()))
  assert seen == [False, False, False, True, False]
