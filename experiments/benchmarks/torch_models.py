"""Resident-data PyTorch equivalents of genjax's DCGAN, VAEs and PixelCNN, for steps/s.

Each model is re-implemented layer by layer from `genjax/models/{dcgan,vae,pixelcnn}.py` with
the sizes and Adam hyper-parameters read from the same genjax config, and trained as the
matching genjax step does (genjax/train/{gan,vae,pixelcnn}.py):
  * dcgan: G = Dense -> BN, ReLU -> ConvT 2w s2 -> BN, ReLU -> ConvT w s2 -> BN, ReLU ->
    Conv 3x3 -> tanh; D = Conv w s2 -> LReLU(0.2) -> Conv 2w s2 -> LReLU -> Dense 1 (no BN).
    Non-saturating BCE-with-logits; one D update on real then fake (fresh z), then one G
    update on fresh z (D's weights frozen: no weight gradients of D there, as in genjax);
    Adam(lr_d / lr_g, b1, b2).
  * vae_mlp / vae_conv: per step a fresh Bernoulli binarisation of the batch, one
    reparameterised z, Bernoulli decoder, analytic KL, loss = -ELBO in nats per image.
  * pixelcnn: 7x7 type-A masked conv, gated residual blocks (masked 3x3 type-B to 2F,
    tanh * sigmoid, 1x1 back to F, residual), ReLU -> 1x1 head -> ReLU -> 1x1 logit; NLL of a
    fresh binarisation.
Layouts are PyTorch's (NCHW); parameter counts equal genjax's (tests/test_bench_torch_models.py).
"Resident" = a tuned eager fp32 loop: the uint8 split converted to float once and kept on the
device, a `randperm` per epoch, index slicing per batch, no host sync inside the timed loop
(genjax's scanned epoch has none either). torch is imported lazily: genjax never needs it.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from experiments.benchmarks.torch_tutorial import (PLAIN_GAN, _require_torch, check_batch_size,
                                                  differences)

MODELS = ("dcgan", "vae_mlp", "vae_conv", "pixelcnn")


def _check_supported(config) -> None:
  """These baselines implement each model's plain configuration only: refuse the rest."""
  if config.model not in MODELS:
    raise ValueError(f"No resident PyTorch equivalent of model {config.model!r}; known: "
                     f"{list(MODELS)}.")
  if config.model == "dcgan":
    off = differences(config, {**PLAIN_GAN, "model_args.dropout_rate": 0.0})
    if off:
      raise ValueError(f"The PyTorch DCGAN baseline implements the plain non-saturating "
                       f"DCGAN only; this config sets {off}.")
  elif config.model.startswith("vae") and config.likelihood != "bernoulli":
    raise ValueError(f"The PyTorch VAE baselines implement the Bernoulli decoder only; "
                     f"config.likelihood={config.likelihood!r}.")
  elif config.model.startswith("vae"):  # The ELBO of one z per image against N(0, I).
    off = differences(config, {"iw_train_samples": 1, "latent_prior": "", "frozen": "",
                               "ema_decay": 0.0})
    if off:
      raise ValueError(f"The PyTorch VAE baselines train both halves on the ELBO (one z per "
                       f"image, N(0, I) prior) with plain Adam; this config sets {off}.")
  elif config.ema_decay:
    raise ValueError(f"The PyTorch baselines keep no moving average of the parameters; "
                     f"config.ema_decay={config.ema_decay}.")


def _adam(torch, params, lr: float, config):
  return torch.optim.Adam(params, lr=lr, betas=(config.adam_b1, config.adam_b2))


# ----------------------------------------------------------------------------- DCGAN


def build_dcgan(config, device: str = "cpu"):
  """(G, D) of `genjax.models.dcgan` for `config` (model_args.width, latent_dim), 28x28x1."""
  torch = _require_torch()
  nn = torch.nn
  w, latent = int(config.model_args.get("width", 64)), int(config.latent_dim)

  def bn(c):  # flax BatchNorm(momentum=0.9) == torch momentum 0.1; eps 1e-5 on both.
    return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)

  class Generator(nn.Module):
    def __init__(self):
      super().__init__()
      self.fc = nn.Linear(latent, 7 * 7 * 4 * w)
      self.bn0 = bn(4 * w)
      # 'SAME' stride-2 4x4 transposed convs in flax: 7 -> 14 -> 28, i.e. padding 1 here.
      self.up1, self.bn1 = nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), bn(2 * w)
      self.up2, self.bn2 = nn.ConvTranspose2d(2 * w, w, 4, 2, 1), bn(w)
      self.out = nn.Conv2d(w, 1, 3, padding=1)

    def forward(self, z):                                       # [B, latent]
      x = torch.relu(self.bn0(self.fc(z).view(-1, 4 * w, 7, 7)))  # [B, 4w, 7, 7]
      x = torch.relu(self.bn1(self.up1(x)))                     # [B, 2w, 14, 14]
      x = torch.relu(self.bn2(self.up2(x)))                     # [B, w, 28, 28]
      return torch.tanh(self.out(x))                            # [B, 1, 28, 28]

  class Discriminator(nn.Module):
    def __init__(self):
      super().__init__()
      self.c1 = nn.Conv2d(1, w, 4, 2, 1)        # 28 -> 14 (flax 'SAME' pads 1 each side)
      self.c2 = nn.Conv2d(w, 2 * w, 4, 2, 1)    # 14 -> 7
      self.fc = nn.Linear(7 * 7 * 2 * w, 1)

    def forward(self, x):                                          # [B, 1, 28, 28]
      x = nn.functional.leaky_relu(self.c1(x), 0.2)
      x = nn.functional.leaky_relu(self.c2(x), 0.2)
      return self.fc(x.flatten(1))[:, 0]                           # logits [B]

  return Generator().to(device), Discriminator().to(device)


def _dcgan_step(config, device: str) -> Callable:
  torch = _require_torch()
  G, D = build_dcgan(config, device)
  g_opt = _adam(torch, G.parameters(), config.lr_g, config)
  d_opt = _adam(torch, D.parameters(), config.lr_d, config)
  bce = torch.nn.functional.binary_cross_entropy_with_logits
  latent = int(config.latent_dim)

  def step(x):  # x: [B, 1, 28, 28] in [-1, 1]
    bs = x.shape[0]
    ones, zeros = torch.ones(bs, device=device), torch.zeros(bs, device=device)
    # D update: G in train mode (batch statistics) without gradients, as genjax's
    # stop_gradient. (torch also moves G's running stats here; genjax discards them. The
    # arithmetic per step is the same.)
    with torch.no_grad():
      fake = G(torch.randn(bs, latent, device=device))
    d_loss = bce(D(x), ones) + bce(D(fake), zeros)
    d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    d_opt.step()
    # G update on fresh z: non-saturating loss -mean(log sigmoid(D(G(z)))). D's weights
    # without gradients, as genjax differentiates G's loss w.r.t. G's parameters only.
    D.requires_grad_(False)
    g_loss = bce(D(G(torch.randn(bs, latent, device=device))), ones)
    g_opt.zero_grad(set_to_none=True)
    g_loss.backward()
    g_opt.step()
    D.requires_grad_(True)
    return g_loss

  return step


# ----------------------------------------------------------------------------- VAEs


def build_vae(config, device: str = "cpu"):
  """(encoder, decoder) of `genjax.models.vae` for `config` (vae_mlp / vae_conv)."""
  torch = _require_torch()
  nn = torch.nn
  latent = int(config.latent_dim)
  if config.model == "vae_mlp":
    hidden = [int(h) for h in config.model_args.get("hidden", (512, 512))]

    def mlp(sizes):  # Dense + ReLU between, no activation after the last.
      layers = []
      for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
      return nn.Sequential(*layers[:-1])

    encoder = nn.Sequential(nn.Flatten(), mlp([784, *hidden, 2 * latent]))
    decoder = nn.Sequential(mlp([latent, *hidden, 784]), nn.Unflatten(1, (1, 28, 28)))
  elif config.model == "vae_conv":
    c1, c2 = [int(c) for c in config.model_args.get("channels", (32, 64))]
    encoder = nn.Sequential(                                   # [B, 1, 28, 28]
        nn.Conv2d(1, c1, 3, 2, 1), nn.ReLU(),                  # [B, c1, 14, 14]
        nn.Conv2d(c1, c2, 3, 2, 1), nn.ReLU(),                 # [B, c2, 7, 7]
        nn.Flatten(), nn.Linear(7 * 7 * c2, 512), nn.ReLU(),
        nn.Linear(512, 2 * latent))                            # [B, 2L]
    # Decoder channels are the encoder's reversed (genjax: channels[::-1]); 3x3 stride-2
    # 'SAME' transposed convs double the size: padding 1, output_padding 1.
    decoder = nn.Sequential(
        nn.Linear(latent, 512), nn.ReLU(), nn.Linear(512, 7 * 7 * c2), nn.ReLU(),
        nn.Unflatten(1, (c2, 7, 7)),
        nn.ConvTranspose2d(c2, c2, 3, 2, 1, output_padding=1), nn.ReLU(),  # [B, c2, 14, 14]
        nn.ConvTranspose2d(c2, c1, 3, 2, 1, output_padding=1), nn.ReLU(),  # [B, c1, 28, 28]
        nn.Conv2d(c1, 1, 3, padding=1))                                    # [B, 1, 28, 28]
  else:
    raise ValueError(f"Unknown VAE model {config.model!r}; known: ['vae_conv', 'vae_mlp'].")
  return encoder.to(device), decoder.to(device)


def _vae_step(config, device: str) -> Callable:
  torch = _require_torch()
  encoder, decoder = build_vae(config, device)
  opt = _adam(torch, [*encoder.parameters(), *decoder.parameters()], config.lr, config)
  bce = torch.nn.functional.binary_cross_entropy_with_logits

  def step(u):  # u: [B, 1, 28, 28] intensities in [0, 1]
    x = torch.bernoulli(u)                                     # dynamic binarisation
    mean, logvar = encoder(x).chunk(2, dim=-1)                 # [B, L] each
    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
    recon = -bce(decoder(z), x, reduction="none").flatten(1).sum(-1)   # log p(x|z) [B]
    kl = 0.5 * torch.sum(torch.exp(logvar) + mean ** 2 - 1.0 - logvar, dim=-1)
    loss = -(recon - kl).mean()                                # nats per image
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss

  return step


# ----------------------------------------------------------------------------- PixelCNN


def build_pixelcnn(config, device: str = "cpu"):
  """`genjax.models.pixelcnn.PixelCNN` for `config` (features, num_blocks, head_features)."""
  torch = _require_torch()
  nn = torch.nn
  args = config.model_args
  f, blocks = int(args.get("features", 64)), int(args.get("num_blocks", 6))
  head = int(args.get("head_features", 256))

  class MaskedConv(nn.Conv2d):
    """'SAME' conv whose kernel is multiplied by the raster-order causal mask."""

    def __init__(self, cin, cout, k, mask_type):
      super().__init__(cin, cout, k, padding=k // 2)
      mask = torch.ones(k, k)
      c = k // 2
      mask[c, c + (mask_type == "B"):] = 0.0
      mask[c + 1:, :] = 0.0
      self.register_buffer("mask", mask[None, None])          # [1, 1, k, k]

    def forward(self, x):
      return self._conv_forward(x, self.weight * self.mask, self.bias)

  class Gated(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv, self.proj = MaskedConv(f, 2 * f, 3, "B"), nn.Conv2d(f, f, 1)

    def forward(self, x):
      a, b = self.conv(x).chunk(2, dim=1)
      return x + self.proj(torch.tanh(a) * torch.sigmoid(b))

  class PixelCNN(nn.Module):
    def __init__(self):
      super().__init__()
      self.first = MaskedConv(1, f, 7, "A")
      self.blocks = nn.Sequential(*[Gated() for _ in range(blocks)])
      self.head1, self.head2 = nn.Conv2d(f, head, 1), nn.Conv2d(head, 1, 1)

    def forward(self, x):                               # {0,1} [B, 1, 28, 28]
      h = self.blocks(self.first(2.0 * x - 1.0))        # centre {0,1} at 0, as genjax
      return self.head2(torch.relu(self.head1(torch.relu(h))))  # logits [B, 1, 28, 28]

  return PixelCNN().to(device)


def _pixelcnn_step(config, device: str) -> Callable:
  torch = _require_torch()
  model = build_pixelcnn(config, device)
  opt = _adam(torch, model.parameters(), config.lr, config)
  bce = torch.nn.functional.binary_cross_entropy_with_logits

  def step(u):  # u: [B, 1, 28, 28] intensities in [0, 1]
    x = torch.bernoulli(u)
    loss = bce(model(x), x, reduction="none").flatten(1).sum(-1).mean()  # nats per image
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss

  return step


# ----------------------------------------------------------------------------- timing

_STEPS = {"dcgan": _dcgan_step, "vae_mlp": _vae_step, "vae_conv": _vae_step,
          "pixelcnn": _pixelcnn_step}


def make_step(config, device: str = "cpu") -> Callable:
  """`step(x) -> loss tensor`: one training step of `config.model` on a resident batch x
  [B, 1, 28, 28] (GAN: in [-1, 1]; likelihood models: intensities in [0, 1])."""
  _check_supported(config)
  return _STEPS[config.model](config, device)


def resident_data(config, images_u8: np.ndarray, device: str = "cpu"):
  """The uint8 split [N, 28, 28, 1] as one float tensor [N, 1, 28, 28] on `device`, in the
  scaling the model's step takes (converted once, as genjax keeps the split resident)."""
  torch = _require_torch()
  if images_u8.ndim != 4 or images_u8.shape[1:] != (28, 28, 1):
    raise ValueError(f"Expected uint8 images [N, 28, 28, 1], got {images_u8.shape}.")
  data = torch.from_numpy(np.array(images_u8, copy=True)).to(device).permute(0, 3, 1, 2)
  data = data.float().contiguous()
  return data.div(127.5).sub(1.0) if config.model == "dcgan" else data.div(255.0)


def time_resident(config, images_u8: np.ndarray, *, batch_size: int, max_steps: int = 0,
                  device: str = "cpu", warmup_steps: int = 3, seed: int = 0
                  ) -> dict[str, Any]:
  """Steady-state seconds for the first `max_steps` batches of one epoch (0: all), after
  `warmup_steps` untimed steps (allocator, thread pools, oneDNN primitive caches)."""
  torch = _require_torch()
  check_batch_size(len(images_u8), batch_size)
  torch.manual_seed(seed)
  step = make_step(config, device)
  data = resident_data(config, images_u8, device)
  n = len(data) // batch_size
  n = min(n, max_steps) if max_steps else n  # at most one epoch, as the genjax side
  sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

  def run(num):
    perm, loss = torch.randperm(len(data), device=device), None
    for i in range(num):
      loss = step(data[perm[i * batch_size:(i + 1) * batch_size]])
    return loss

  run(min(warmup_steps, n))
  sync()
  t = time.perf_counter()
  loss = run(n)
  sync()
  epoch_s = time.perf_counter() - t
  return {"epoch_s": epoch_s, "steps": n, "batch_size": batch_size,
          "final_loss": loss.item() if loss is not None else None}


def baselines_for(config) -> dict[str, Callable]:
  """{name: fn(images_u8, *, batch_size, max_steps, device)} for `config.model` ({} when
  this module has no equivalent of it)."""
  if config.model not in MODELS:
    return {}
  _check_supported(config)

  def fn(images_u8, *, batch_size, max_steps=0, device="cpu"):
    return time_resident(config, images_u8, batch_size=batch_size, max_steps=max_steps,
                         device=device)

  return {f"torch_{config.model}": fn}
