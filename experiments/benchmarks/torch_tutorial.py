"""The reference PyTorch MLP GAN tutorial, as a tutorial user runs it, for side-by-side timing.

Three baselines, all eager fp32 with the tutorial's G/D (the same shapes and initialisation as
`genjax/models/mlp_gan.py`), BCELoss on a Sigmoid output and Adam(2e-4):
  * `tutorial`: a map-style Dataset that turns each uint8 image into a PIL image and applies
    ToTensor + Normalize(0.5, 0.5) per item (what torchvision's MNIST + transforms do), and a
    DataLoader with shuffle=True, batch 64;
  * `resident`: the whole split normalised once and kept on the device as one tensor, each
    epoch a `randperm` and index slicing; the tutorial's own step (it backpropagates D's loss
    into G, computes D's weight gradients in G's update, makes its noise and targets on the
    host and copies them to the device, and reads both losses each step);
  * `resident_tuned`: the same resident data with that waste removed, as genjax's step has it:
    the fakes of D's update made without a graph, D's weights without gradients in G's update,
    the noise and targets made on the device (not on the host and copied), the losses kept
    on the device (one host sync per epoch), and two untimed warm-up steps.
    The same updates as the tutorial's, for the fewest eager PyTorch operations.
torchvision is not required: its two transforms are re-implemented line for line. The
network is the reference model as `genjax/models/mlp_gan.py` has it (two dropouts in D;
the lyeoni/pytorch-mnist-GAN notebook has a third, and batch 100).
torch is optional (the `bench` extra); `available()` says whether it can be imported.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np


def available() -> bool:
  try:
    import torch  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    return False
  return True


def _require_torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("The PyTorch baselines need torch: pip install 'genjax[bench]'.") from e
  return torch


# What the tutorial's step trains (BCE on D's sigmoid, one D update per G update, no penalty,
# augmentation or moving average); a config that trains otherwise does other work per step.
PLAIN_GAN = {"loss": "non_saturating", "n_critic": 1, "r1_gamma": 0.0, "gp_weight": 0.0,
             "spectral_norm": False, "ada": False, "ema_decay": 0.0}


def differences(config, plain: dict) -> dict:
  """{key: config's value} where `config` differs from `plain`; a 'model_args.x' key reads
  config.model_args.x (absent: the plain value)."""
  out = {}
  for key, want in plain.items():
    group, _, name = key.rpartition(".")
    have = config.model_args.get(name, want) if group else config[key]
    if have != want:
      out[key] = have
  return out


def check_supported(config) -> None:
  """The tutorial baselines time the tutorial's GAN only: refuse an MLP GAN config that
  trains another one (its steps/s over theirs would compare different work)."""
  off = differences(config, {**PLAIN_GAN, "latent_dim": 100, "model_args.dropout_rate": 0.3})
  if off:
    raise ValueError(f"The PyTorch tutorial baselines implement the tutorial's GAN only "
                     f"(non-saturating BCE, latent 100, dropout 0.3); this config sets {off}.")


def check_batch_size(num_images: int, batch_size: int) -> None:
  """One clear error when not even one whole batch fits (a row of 0 steps, or of one partial
  batch, would be a meaningless steps/s)."""
  if not 1 <= batch_size <= num_images:
    raise ValueError(f"batch_size {batch_size}: need 1 <= batch_size <= the {num_images} "
                     "images, so that an epoch has at least one whole batch.")


def build(device: str = "cpu", latent_dim: int = 100):
  """(G, D, G_optimizer, D_optimizer, criterion) of the tutorial, with the reference model."""
  torch = _require_torch()
  nn = torch.nn

  class Generator(nn.Module):
    def __init__(self, g_input_dim, g_output_dim):
      super().__init__()
      self.fc1 = nn.Linear(g_input_dim, 256)
      self.fc2 = nn.Linear(self.fc1.out_features, self.fc1.out_features * 2)
      self.fc3 = nn.Linear(self.fc2.out_features, self.fc2.out_features * 2)
      self.fc4 = nn.Linear(self.fc3.out_features, g_output_dim)

    def forward(self, x):
      x = nn.functional.leaky_relu(self.fc1(x), 0.2)
      x = nn.functional.leaky_relu(self.fc2(x), 0.2)
      x = nn.functional.leaky_relu(self.fc3(x), 0.2)
      return torch.tanh(self.fc4(x))

  class Discriminator(nn.Module):
    def __init__(self, d_input_dim):
      super().__init__()
      self.fc1 = nn.Linear(d_input_dim, 1024)
      self.fc2 = nn.Linear(self.fc1.out_features, self.fc1.out_features // 2)
      self.fc3 = nn.Linear(self.fc2.out_features, self.fc2.out_features // 2)
      self.fc4 = nn.Linear(self.fc3.out_features, 1)

    def forward(self, x):
      x = nn.functional.leaky_relu(self.fc1(x), 0.2)
      x = nn.functional.dropout(x, 0.3, training=self.training)
      x = nn.functional.leaky_relu(self.fc2(x), 0.2)
      x = nn.functional.dropout(x, 0.3, training=self.training)
      x = nn.functional.leaky_relu(self.fc3(x), 0.2)
      return torch.sigmoid(self.fc4(x))

  mnist_dim = 28 * 28
  G = Generator(latent_dim, mnist_dim).to(device)
  D = Discriminator(mnist_dim).to(device)
  lr = 0.0002
  G_optimizer = torch.optim.Adam(G.parameters(), lr=lr)
  D_optimizer = torch.optim.Adam(D.parameters(), lr=lr)
  return G, D, G_optimizer, D_optimizer, nn.BCELoss()


def _train_step(torch, x, G, D, G_optimizer, D_optimizer, criterion, latent_dim, device):
  """The tutorial's D_train(x) then G_train(x). As there, the noise and the targets are made
  on the host and copied to `device` (`Variable(torch.randn(bs, z_dim).to(device))`)."""
  bs = x.shape[0]
  # D_train
  D.zero_grad()
  x_real, y_real = x.view(-1, 28 * 28), torch.ones(bs, 1).to(device)
  D_real_loss = criterion(D(x_real), y_real)
  z = torch.randn(bs, latent_dim).to(device)
  x_fake, y_fake = G(z), torch.zeros(bs, 1).to(device)
  D_fake_loss = criterion(D(x_fake), y_fake)
  D_loss = D_real_loss + D_fake_loss
  D_loss.backward()
  D_optimizer.step()
  # G_train
  G.zero_grad()
  z = torch.randn(bs, latent_dim).to(device)
  y = torch.ones(bs, 1).to(device)
  G_loss = criterion(D(G(z)), y)
  G_loss.backward()
  G_optimizer.step()
  # The tutorial appends .item() of both losses every step (a host sync per step).
  return D_loss.item(), G_loss.item()


def _tuned_step(torch, x, G, D, G_optimizer, D_optimizer, criterion, latent_dim, device):
  """The tutorial's D_train then G_train, without the work whose results it throws away, and
  the noise and targets made on `device` (the tutorial makes them on the host and copies
  them; on the CPU the numbers are the same)."""
  bs = x.shape[0]
  y_real, y_fake = torch.ones(bs, 1, device=device), torch.zeros(bs, 1, device=device)
  D.zero_grad(set_to_none=True)
  D_real_loss = criterion(D(x.view(-1, 28 * 28)), y_real)  # Draws in the tutorial's order.
  with torch.no_grad():
    x_fake = G(torch.randn(bs, latent_dim, device=device))
  D_loss = D_real_loss + criterion(D(x_fake), y_fake)
  D_loss.backward()
  D_optimizer.step()
  G.zero_grad(set_to_none=True)
  D.requires_grad_(False)
  G_loss = criterion(D(G(torch.randn(bs, latent_dim, device=device))), y_real)
  G_loss.backward()
  G_optimizer.step()
  D.requires_grad_(True)
  return D_loss.detach(), G_loss.detach()


def make_tutorial_loader(images_u8: np.ndarray, batch_size: int = 64):
  """DataLoader(Dataset with ToTensor + Normalize(0.5, 0.5) per item, shuffle=True)."""
  torch = _require_torch()
  from PIL import Image  # pylint: disable=import-outside-toplevel

  def to_tensor(pic):  # torchvision.transforms.ToTensor for a mode 'L' PIL image
    img = torch.from_numpy(np.array(pic, np.uint8, copy=True))
    img = img.view(pic.size[1], pic.size[0], 1).permute((2, 0, 1)).contiguous()
    return img.to(dtype=torch.get_default_dtype()).div(255)

  def normalize(t, mean=(0.5,), std=(0.5,)):  # torchvision.transforms.Normalize
    mean = torch.as_tensor(mean, dtype=t.dtype)[:, None, None]
    std = torch.as_tensor(std, dtype=t.dtype)[:, None, None]
    return t.sub(mean).div(std)

  class MNISTLike(torch.utils.data.Dataset):
    def __init__(self, images):
      self.images = images[..., 0] if images.ndim == 4 else images  # [N, 28, 28]

    def __len__(self):
      return len(self.images)

    def __getitem__(self, i):
      img = Image.fromarray(self.images[i], mode="L")  # as torchvision's MNIST does
      return normalize(to_tensor(img)), 0

  return torch.utils.data.DataLoader(MNISTLike(images_u8), batch_size=batch_size,
                                     shuffle=True)


def time_tutorial_epoch(images_u8: np.ndarray, *, batch_size: int = 64, max_steps: int = 0,
                        seed: int = 0, device: str = "cpu") -> dict[str, Any]:
  """Seconds for one epoch of the tutorial loop (data loading included)."""
  torch = _require_torch()
  check_batch_size(len(images_u8), batch_size)
  torch.manual_seed(seed)
  G, D, G_opt, D_opt, criterion = build(device)
  loader = make_tutorial_loader(images_u8, batch_size)
  steps = 0
  t = time.perf_counter()
  for x, _ in loader:
    _train_step(torch, x.to(device), G, D, G_opt, D_opt, criterion, 100, device)
    steps += 1
    if max_steps and steps >= max_steps:
      break
  return {"epoch_s": time.perf_counter() - t, "steps": steps, "batch_size": batch_size}


def time_resident_epoch(images_u8: np.ndarray, *, batch_size: int = 64, max_steps: int = 0,
                        seed: int = 0, device: str = "cpu") -> dict[str, Any]:
  """Seconds for one epoch of the tutorial's step with the normalised split resident on
  `device` (whole batches), and the per-step losses the tutorial records ('d_loss', 'g_loss'
  lists)."""
  return _time_resident(images_u8, _train_step, batch_size=batch_size, max_steps=max_steps,
                        seed=seed, device=device)


def time_resident_tuned_epoch(images_u8: np.ndarray, *, batch_size: int = 64,
                              max_steps: int = 0, seed: int = 0,
                              device: str = "cpu") -> dict[str, Any]:
  """As `time_resident_epoch`, with the tuned step (`_tuned_step`) after two untimed steps."""
  return _time_resident(images_u8, _tuned_step, batch_size=batch_size, max_steps=max_steps,
                        seed=seed, device=device, warmup=2)


def _time_resident(images_u8, step, *, batch_size, max_steps, seed, device, warmup=0):
  torch = _require_torch()
  check_batch_size(len(images_u8), batch_size)
  torch.manual_seed(seed)
  G, D, G_opt, D_opt, criterion = build(device)
  data = torch.from_numpy(np.array(images_u8, copy=True)).to(device)  # writable copy
  data = data.reshape(len(data), -1).float().div(127.5).sub(1.0)  # [N, 784] in [-1, 1]
  for _ in range(warmup):  # First calls: lazy kernel loading, Adam's state allocation.
    step(torch, data[:batch_size], G, D, G_opt, D_opt, criterion, 100, device)
  if device.startswith("cuda"):
    torch.cuda.synchronize()
  n = len(data) // batch_size
  n = min(n, max_steps) if max_steps else n  # at most one epoch, as the genjax side
  t = time.perf_counter()
  perm = torch.randperm(len(data), device=device)
  losses = []
  for i in range(n):
    x = data[perm[i * batch_size:(i + 1) * batch_size]]
    losses.append(step(torch, x, G, D, G_opt, D_opt, criterion, 100, device))
  if losses and torch.is_tensor(losses[0][0]):  # Left on the device: one sync for all.
    losses = torch.stack([torch.stack(pair) for pair in losses]).cpu().tolist()
  seconds = time.perf_counter() - t
  d_loss, g_loss = zip(*losses) if losses else ((), ())
  return {"epoch_s": seconds, "steps": n, "batch_size": batch_size,
          "d_loss": list(d_loss), "g_loss": list(g_loss)}


def train_tutorial(images_u8: np.ndarray, *, epochs: int, batch_size: int = 64, seed: int = 0,
                   device: str = "cpu", on_epoch=None):
  """The tutorial trained as its users run it (per-item transforms, shuffled DataLoader) for
  `epochs` epochs. Returns (G, per-epoch mean D and G losses); `on_epoch(epoch, d, g, s)`
  is called after each epoch (for progress lines)."""
  torch = _require_torch()
  torch.manual_seed(seed)
  G, D, G_opt, D_opt, criterion = build(device)
  loader = make_tutorial_loader(images_u8, batch_size)
  history = []
  for epoch in range(1, epochs + 1):
    t = time.perf_counter()
    losses = [_train_step(torch, x.to(device), G, D, G_opt, D_opt, criterion, 100, device)
              for x, _ in loader]
    d_loss, g_loss = np.mean(losses, axis=0)
    history.append({"epoch": epoch, "d_loss": float(d_loss), "g_loss": float(g_loss),
                    "seconds": time.perf_counter() - t})
    if on_epoch:
      on_epoch(**history[-1])
  return G, history


def sample_uint8(G, num: int, *, seed: int = 0, batch_size: int = 1000,
                 device: str = "cpu") -> np.ndarray:
  """`num` samples of the tutorial's generator as uint8 [num, 28, 28, 1], mapped from [-1, 1]
  as genjax's `to_uint8` does (the tutorial's own `save_image` shows the same [-1, 1] range)."""
  torch = _require_torch()
  gen = torch.Generator(device=device).manual_seed(seed)
  out = []
  with torch.no_grad():
    for start in range(0, num, batch_size):
      z = torch.randn(min(batch_size, num - start), 100, generator=gen, device=device)
      out.append(G(z).cpu().numpy())
  images = np.concatenate(out).reshape(num, 28, 28, 1)
  return np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def with_threads(fn, threads: int):
  """`fn` run with `torch.set_num_threads(threads)` (0: torch's default, one per core).
  On a shared CPU, eager PyTorch's per-op thread barriers suffer badly from other
  processes' load, so the benchmark reports both the default and 1 thread."""
  def run(*args, **kwargs):
    torch = _require_torch()
    before = torch.get_num_threads()
    if threads:
      torch.set_num_threads(threads)
    try:
      return fn(*args, **kwargs)
    finally:
      torch.set_num_threads(before)
  return run


BASELINES = {"torch_tutorial": time_tutorial_epoch, "torch_resident": time_resident_epoch,
             "torch_resident_tuned": time_resident_tuned_epoch}
