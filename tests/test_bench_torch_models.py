"""The resident-data PyTorch equivalents of DCGAN, the VAEs and PixelCNN
(experiments/benchmarks/torch_models.py): same parameter counts as the genjax models, the
baselines run on tiny data, a loss falls, and bench.py's per-model baseline choice."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed: the PyTorch baselines are "
                            "the optional `bench` extra (pip install 'genjax[bench]')")

# pylint: disable=wrong-import-position
from experiments.benchmarks import registry
from experiments.benchmarks import torch_models as tm
from experiments.configs import dcgan, mlp_gan, pixelcnn, vae_conv, vae_mlp
from genjax import bench, models
from genjax import config as config_lib
from genjax.data import load
from genjax.models.pixelcnn import get_pixelcnn
from genjax.models.vae import get_vae
from tests import torch_weights as tw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"dcgan": dcgan.get_config, "vae_mlp": vae_mlp.get_config,
           "vae_conv": vae_conv.get_config, "pixelcnn": pixelcnn.get_config}


@pytest.fixture(scope="module")
def images():
  return load("digits", "train").images[:8]  # uint8 [8, 28, 28, 1]


@pytest.fixture(autouse=True)
def one_thread():
  before = torch.get_num_threads()
  torch.set_num_threads(1)  # The machine is shared; tiny models gain nothing from more.
  yield
  torch.set_num_threads(before)


def _flax_count(module, *args, **kwargs) -> int:
  shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args, **kwargs))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


def _torch_count(*modules) -> int:
  return sum(p.numel() for m in modules for p in m.parameters())


@pytest.mark.parametrize("arg", ["mnist", "mnist,smoke"])
def test_dcgan_parameter_counts_equal_genjax(arg):
  c = dcgan.get_config(arg)
  g, d = models.get_gan(c)
  G, D = tm.build_dcgan(c)
  x = jnp.zeros((1, 28, 28, 1))
  assert _torch_count(G) == _flax_count(g, jnp.zeros((1, c.latent_dim)))
  assert _torch_count(D) == _flax_count(d, x, train=False)
  if arg == "mnist":  # the full model, written down so a silent change in either shows
    assert (_torch_count(G), _torch_count(D)) == (1_923_969, 138_561)
  out = G(torch.zeros(2, c.latent_dim))
  assert tuple(out.shape) == (2, 1, 28, 28) and tuple(D(out).shape) == (2,)


@pytest.mark.parametrize("name", ["vae_mlp", "vae_conv", "pixelcnn"])
@pytest.mark.parametrize("arg", ["", "smoke"])
def test_likelihood_model_parameter_counts_equal_genjax(name, arg):
  c = CONFIGS[name](arg)
  x = jnp.zeros((1, 28, 28, 1))
  u = torch.zeros(2, 1, 28, 28)
  if name == "pixelcnn":
    net = tm.build_pixelcnn(c)
    assert _torch_count(net) == _flax_count(get_pixelcnn(c), x)
    assert tuple(net(u).shape) == (2, 1, 28, 28)
  else:
    enc, dec = tm.build_vae(c)
    assert _torch_count(enc, dec) == _flax_count(get_vae(c), x)
    h = enc(u)
    assert tuple(h.shape) == (2, 2 * c.latent_dim)
    assert tuple(dec(h[:, :c.latent_dim]).shape) == (2, 1, 28, 28)


def test_pixelcnn_is_causal():
  """The logit of pixel i does not depend on pixels i, i+1, ... (type-A then type-B masks).
  Seeded: about one random init in 300 (seed 123 of 0-299) gives pixel i's logit no gradient
  w.r.t. any input pixel, which `seen[:i].any()` would report as a failure."""
  torch.manual_seed(0)
  net = tm.build_pixelcnn(pixelcnn.get_config("smoke"))
  x = torch.bernoulli(torch.full((1, 1, 28, 28), 0.5)).requires_grad_()
  i = 14 * 28 + 14
  net(x).flatten()[i].backward()
  seen = x.grad.flatten().abs() > 0
  assert not seen[i:].any() and seen[:i].any()


@pytest.mark.parametrize("model", list(CONFIGS))
def test_baselines_run_two_steps_on_tiny_images(model, images):
  c = CONFIGS[model]("smoke" if model != "dcgan" else "mnist,smoke")
  (name, fn), = tm.baselines_for(c).items()
  assert name == f"torch_{model}"
  out = fn(images, batch_size=4, max_steps=2, device="cpu")
  assert out["steps"] == 2 and out["epoch_s"] > 0 and np.isfinite(out["final_loss"])
  # max_steps is capped at one epoch of whole batches (8 // 4 = 2), as on the genjax side.
  assert fn(images, batch_size=4, max_steps=50)["steps"] == 2


def test_vae_loss_falls(images):
  torch.manual_seed(0)
  c = vae_mlp.get_config("smoke")
  step = tm.make_step(c)
  u = tm.resident_data(c, images)  # [8, 1, 28, 28] in [0, 1]
  assert tuple(u.shape) == (8, 1, 28, 28) and 0.0 <= float(u.min()) <= float(u.max()) <= 1.0
  losses = [step(u).item() for _ in range(30)]
  # From ~784 ln 2 = 543 nats (logits ~0) down: a wrong sign or a detached graph stays put.
  assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


def test_registry_picks_the_model_baselines_and_refuses_others():
  assert list(registry.select(mlp_gan.get_config("smoke"), None)) == [
      "torch_tutorial", "torch_resident", "torch_resident_tuned"]
  for model, get_config in CONFIGS.items():
    assert list(registry.select(get_config("smoke"), None)) == [f"torch_{model}"]
  assert registry.select(dcgan.get_config("smoke"), []) == {}
  assert registry.select(config_lib.override(dcgan.get_config("smoke"), {"model": "cgan"}),
                         None) == {}
  with pytest.raises(ValueError, match=r"\['torch_tutorial'\] time \['mlp_gan'\], not this "
                     r"config's model 'dcgan'; its baselines: \['torch_dcgan'\]"):
    registry.select(dcgan.get_config("smoke"), ["torch_tutorial"])
  with pytest.raises(ValueError, match="torch_pixelcnn.*not this config's model 'mlp_gan'"):
    registry.select(mlp_gan.get_config("smoke"), ["torch_pixelcnn"])
  with pytest.raises(ValueError, match="Unknown baselines"):
    registry.select(mlp_gan.get_config("smoke"), ["torch_nope"])
  with pytest.raises(ValueError, match="plain non-saturating DCGAN only.*hinge"):
    registry.select(dcgan.get_config("smoke,hinge"), None)
  with pytest.raises(ValueError, match="Bernoulli decoder only"):
    registry.select(vae_mlp.get_config("smoke,gaussian"), None)


def test_suite_runs_genjax_beside_its_torch_equivalent(images):
  c = vae_mlp.get_config("smoke")
  labels = np.zeros(len(images), np.int32)
  base = {n: (lambda fn: lambda x, **kw: fn(x, device="cpu", **kw))(fn)
          for n, fn in registry.select(c, None).items()}
  rows = bench.run_suite(c, images, labels, batch_sizes=(4,), baselines=base, steps=2,
                         warmup=False)
  rows = bench.add_ratios(rows, list(base))
  assert [(r["impl"], r["model"], r["steps"]) for r in rows] == [
      ("genjax", "vae_mlp", 2), ("torch_vae_mlp", "vae_mlp", 2)]
  assert rows[0]["x_torch_vae_mlp"] > 0


def test_bench_cli_refuses_a_baseline_of_another_model():
  proc = subprocess.run(
      [sys.executable, "experiments/bench.py", "--config=experiments/configs/dcgan.py:smoke",
       "--baselines=torch_resident", "--steps=2"],
      cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True,
      timeout=120, check=False)
  assert proc.returncode != 0
  assert "['torch_resident'] time ['mlp_gan'], not this config's model 'dcgan'" in proc.stderr


# Numerical equivalence where the two layouts map one to one: genjax's parameters copied
# into the torch modules give the same outputs (masks, gating, split order, flatten order).


def _nchw(x):
  return torch.from_numpy(np.array(x)).permute(0, 3, 1, 2)


def test_pixelcnn_matches_genjax_with_the_same_weights():
  c = pixelcnn.get_config("smoke")  # one gated block
  model = get_pixelcnn(c)
  x = jax.random.bernoulli(jax.random.PRNGKey(1), 0.4, (2, 28, 28, 1)).astype(jnp.float32)
  p = model.init(jax.random.PRNGKey(0), x)["params"]
  net = tm.build_pixelcnn(c)
  first = p["MaskedConv_0"]["Conv_0"]
  tensors = [tw.conv(first["kernel"]), tw.vec(first["bias"])]
  for i in range(c.model_args.num_blocks):
    b = p[f"GatedResidualBlock_{i}"]
    tensors += [tw.conv(b["MaskedConv_0"]["Conv_0"]["kernel"]),
                tw.vec(b["MaskedConv_0"]["Conv_0"]["bias"]), tw.conv(b["Conv_0"]["kernel"]),
                tw.vec(b["Conv_0"]["bias"])]
  for name in ("Conv_0", "Conv_1"):
    tensors += [tw.conv(p[name]["kernel"]), tw.vec(p[name]["bias"])]
  tw.load(net, tensors)
  want = np.asarray(model.apply({"params": p}, x)).transpose(0, 3, 1, 2)
  np.testing.assert_allclose(net(_nchw(x)).detach().numpy(), want, atol=1e-4, rtol=1e-4)


def test_mlp_vae_matches_genjax_with_the_same_weights():
  c = vae_mlp.get_config("smoke")
  vae = get_vae(c)
  x = jax.random.bernoulli(jax.random.PRNGKey(1), 0.3, (2, 28, 28, 1)).astype(jnp.float32)
  p = vae.init(jax.random.PRNGKey(0), x)["params"]
  enc, dec = tm.build_vae(c)
  for module, tree in ((enc, p["encoder"]), (dec, p["decoder"])):
    tw.load(module, tw.dense_stack(tree, len(tree)))
  mean, logvar = vae.apply({"params": p}, x, method=type(vae).encode)
  h = enc(_nchw(x))
  np.testing.assert_allclose(h.detach().numpy(), np.concatenate([mean, logvar], -1),
                             atol=1e-4, rtol=1e-4)
  want = np.asarray(vae.apply({"params": p}, mean, method=type(vae).decode))
  got = dec(torch.from_numpy(np.array(mean))).detach().numpy()
  np.testing.assert_allclose(got, want.transpose(0, 3, 1, 2), atol=1e-4, rtol=1e-4)


def test_dcgan_discriminator_matches_genjax_with_the_same_weights():
  c = dcgan.get_config("mnist,smoke")
  _, d = models.get_gan(c)
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 28, 28, 1), minval=-1.0, maxval=1.0)
  p = d.init(jax.random.PRNGKey(0), x, train=False)["params"]
  _, D = tm.build_dcgan(c)
  w = c.model_args.width
  # flax flattens [7, 7, 2w] (HWC), torch [2w, 7, 7] (CHW): reorder the Dense rows.
  fc = np.asarray(p["Dense_0"]["kernel"]).reshape(7, 7, 2 * w, 1).transpose(3, 2, 0, 1)
  tw.load(D, [tw.conv(p["Conv_0"]["kernel"]), tw.vec(p["Conv_0"]["bias"]),
            tw.conv(p["Conv_1"]["kernel"]), tw.vec(p["Conv_1"]["bias"]),
            torch.from_numpy(fc.reshape(1, -1).copy()), tw.vec(p["Dense_0"]["bias"])])
  want = np.asarray(d.apply({"params": p}, x, train=False))
  np.testing.assert_allclose(D(_nchw(x)).detach().numpy(), want, atol=1e-4, rtol=1e-4)


def test_dcgan_step_computes_each_d_weight_gradient_once(monkeypatch, images):
  """genjax differentiates G's loss w.r.t. G's parameters only; the torch step computed D's
  weight gradients in G's update as well (work genjax does not do, thrown away)."""
  built = {}

  def spy(*args, **kwargs):
    built["G"], built["D"] = build(*args, **kwargs)
    return built["G"], built["D"]

  build = tm.build_dcgan
  monkeypatch.setattr(tm, "build_dcgan", spy)
  c = dcgan.get_config("mnist,smoke")
  step = tm.make_step(c)
  counts = {"G": 0, "D": 0}
  for net in ("G", "D"):
    for p in built[net].parameters():
      p.register_hook(lambda g, net=net: counts.__setitem__(net, counts[net] + 1))
  step(tm.resident_data(c, images)[:4])
  n = {net: len(list(built[net].parameters())) for net in ("G", "D")}
  assert counts == n  # one gradient per parameter: D's in its update, G's in its update
  assert all(p.requires_grad for p in built["D"].parameters())  # D trainable again


@pytest.mark.parametrize("model,overrides", [
    ("vae_mlp", {"iw_train_samples": 8}), ("vae_conv", {"frozen": "encoder"}),
    ("vae_mlp", {"latent_prior": "prior.npz"}), ("vae_mlp", {"ema_decay": 0.999}),
    ("pixelcnn", {"ema_decay": 0.999}), ("dcgan", {"ema_decay": 0.999}),
    ("mlp_gan", {"loss": "hinge"}), ("mlp_gan", {"n_critic": 5, "gp_weight": 10.0}),
    ("mlp_gan", {"r1_gamma": 1.0}), ("mlp_gan", {"ada": True}), ("mlp_gan", {"latent_dim": 64}),
    ("mlp_gan", {"model_args.dropout_rate": 0.0}), ("mlp_gan", {"ema_decay": 0.999})])
def test_registry_refuses_configs_that_train_otherwise_than_the_baseline(model, overrides):
  """A baseline that silently does other work (1 z in place of 8, a penalty or augmentation
  left out, no moving average) gives a ratio of two different steps."""
  get_config = {**CONFIGS, "mlp_gan": mlp_gan.get_config}[model]
  c = config_lib.override(get_config("smoke"), overrides)
  with pytest.raises(ValueError, match="this config sets|ema_decay"):
    registry.select(c, None)
