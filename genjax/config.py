"""The one base config: every key genjax reads is declared here, with its default.

Experiment configs (`experiments/configs/<name>.py:get_config(arg)`) start from
`base_config()` and change values; they cannot add keys, so a typo fails loudly. Durations
become steps in one place, `steps_per_epoch`.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

import jax
import ml_collections

FAMILIES = ("gan", "vae", "pixelcnn")
PARALLEL_MODES = ("jit", "shard_map")
NAN_POLICIES = ("stop", "rollback", "off")
VAE_HALVES = ("", "encoder", "decoder")  # config.frozen
# JAX's counter-based PRNGs a run may draw its keys from (`jax_default_prng_impl`); the
# Philox ones came with jax 0.10.2 (`available_prng_impls`).
PRNG_IMPLS = ("threefry2x32", "philox2x32", "philox4x32")
PHILOX_JAX = (0, 10, 2)


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Every key of the run (init, shuffling, noise, dropout) comes from this JAX PRNG.
  # 'threefry2x32' is JAX's default; the Philox ones draw other random numbers of the same
  # distributions and compile unrolled on CPU, where JAX's threefry runs as a loop: the MLP
  # GAN's step is ~10 % faster there with 'philox2x32' (experiments/RESULTS.md).
  c.prng_impl = "threefry2x32"
  # Model.
  c.family = "gan"            # Which training task: see genjax.train.tasks.
  c.model = "mlp_gan"         # Key of genjax.models.GAN_MODELS.
  c.model_args = ml_collections.ConfigDict({"dropout_rate": 0.3})
  c.latent_dim = 100
  c.compute_dtype = "float32"  # 'bfloat16': bf16 compute, fp32 params and optimizer.
  # Data.
  c.dataset = "digits"
  c.data_dir = ""             # Empty: $GENJAX_DATA_DIR, else tensorflow-datasets.
  c.data_source = "auto"      # 'auto' | 'idx' | 'tfds'.
  # Optimisation (the tutorial's: BCE, Adam(2e-4), batch 64).
  c.loss = "non_saturating"
  c.batch_size = 64
  c.epochs = 100
  c.lr_g = 2e-4
  c.lr_d = 2e-4
  c.adam_b1 = 0.9
  c.adam_b2 = 0.999
  c.flatten_optimizer = False # Adam over each network's parameters raveled into one vector
                              # (optax.flatten): one update in place of one per leaf, the same
                              # arithmetic; the optimizer state's layout differs, so a
                              # checkpoint of the other setting does not restore. Meant for
                              # GPUs, where it saves kernel launches; on a CPU the raveling
                              # copies make the MLP GAN's epoch slower (RESULTS.md, item 14).
  # Parallelism: 'jit' (jit + NamedSharding over a ('data',) mesh, the compiler inserts the
  # gradient all-reduce) or 'shard_map' (per-device code with an explicit pmean).
  c.parallel = "jit"
  c.num_devices = 0           # 0: all local devices.
  c.scan_unroll = 1           # Steps fused per iteration of the epoch's lax.scan (multi-step
                              # fusion: XLA schedules k steps as one body; same results).
  c.xla_options = ""          # XLA compiler options for the training epoch's program (jax.jit's
                              # compiler_options), XLA_FLAGS syntax: 'name=value name=value',
                              # e.g. 'xla_gpu_command_buffer_scheduling_mode=CONCURRENT'
                              # (independent kernels of a GPU step may then run side by side;
                              # experiments/RESULTS.md). '': XLA's defaults.
  c.init_from = ""            # A work directory: a run with no checkpoint yet starts from its
                              # latest parameters (the last ones) with a fresh optimizer, e.g. to
                              # go on with a decaying rate (genjax.train.warm_start); '': scratch.
  # Host loop.
  c.checkpoint_every = 10     # Epochs between checkpoints (the last epoch always saves).
  c.keep_checkpoints = 3      # The latest n (>= 1) are kept.
  c.keep_best_metric = ""     # e.g. 'g_loss': also keep the best checkpoint by this metric.
  c.keep_best_mode = "min"
  c.ema_decay = 0.0           # > 0: also keep an exponential moving average of the trained
                              # parameters (GANs: G's), what sampling and scoring then use
                              # (genjax.train.ema); training itself is unchanged. 0: off.
  c.sample_every = 1          # Epochs between sample-grid PNGs.
  c.num_grid = 64
  c.progress_bar = True
  c.tensorboard = True
  # Reliability (genjax.train.guard, genjax.checkpoint, the host loop's fault handling).
  c.nan_policy = "stop"       # On NaN/Inf: 'stop' (error naming step and term), 'rollback'
                              # (restore the last good checkpoint and go on), 'off' (no guard).
  c.nan_check = "metrics"     # What the guard reads every step: 'metrics' (the step's losses:
                              # ~free; a bad gradient shows one step late, as the next loss)
                              # or 'parameters' (also every parameter the step made: the fault
                              # named at the step that made it; 8 % of the MLP GAN's CPU step).
                              # The whole state is read once per epoch either way.
  c.nan_max_rollbacks = 3     # 'rollback' gives up with the 'stop' error after this many.
  c.debug_nan_step = -1       # Test hook: poison the batch of this global step with NaN
                              # inside the jitted step, once per process (-1: off).
  c.async_checkpoint = False  # Orbax async save: training goes on while the step is written.
  # Multi-process runs (genjax.train.distributed; issue 6). With distributed=True every
  # process runs the same command and calls jax.distributed.initialize; empty / 0 / -1
  # below let JAX auto-detect (SLURM, Open MPI, Cloud TPU).
  c.distributed = False
  c.coordinator_address = ""  # 'host:port' of process 0, e.g. '127.0.0.1:12345'.
  c.num_processes = 0
  c.process_id = -1
  c.cpu_collectives = "gloo"  # CPU-only cross-process all-reduce backend ('' = JAX default).
  # --- GAN zoo (issue 5, GAN half): stabilisers of the one GAN step. Defaults are off and
  # reproduce the plain step exactly. Models 'dcgan' / 'cgan' read model_args.width.
  c.r1_gamma = 0.0            # R1 penalty (gamma/2) E||grad_x D(real)||^2; 0: off.
  c.gp_weight = 0.0           # WGAN-GP weight lambda * E(||grad D(x_hat)|| - 1)^2; 0: off.
  c.spectral_norm = False     # Spectral-normalise every D layer (conv discriminators).
  c.n_critic = 1              # D updates per G update (same real batch, fresh z each).
  c.d_joint_batch = False     # D's update on [real; fake] as one batch (one pass, same loss;
                              # dropout masks drawn once); needs a D without batch statistics.
  c.g_joint_batch = False     # G's forward passes for D's update and for its own as one batch
                              # of 2B (the same z and results; one pass instead of two); needs
                              # a G without batch statistics and n_critic=1.
  c.ada = False               # Adaptive discriminator augmentation (genjax.train.ada).
  c.ada_target = 0.6          # Target of r_t = E[sign D(real)].
  c.ada_interval = 4          # Steps between adjustments of p.
  c.ada_kimg = 100.0          # Thousands of images for p to move by 1 at the full rate
  #                             (Karras et al. 2020 use 500; 5x faster suits short runs).
  c.ada_p_init = 0.0          # Starting augmentation probability (fixed p if ada_kimg huge).
  # --- Likelihood models: families 'vae' and 'pixelcnn' (issue 5, likelihood half). ---
  # Model sizes are model_args keys: vae_mlp 'hidden', vae_conv 'channels', vae_gated
  # 'channels' / 'hidden', pixelcnn 'features' / 'num_blocks' / 'head_features', gated_pixelcnn
  # 'features' / 'num_layers' / 'head_features'.
  c.lr = 1e-3                 # Adam learning rate of the likelihood models (GANs: lr_g/lr_d).
  c.lr_halflife_steps = 0     # > 0: that lr decays smoothly, halving every this many steps
                              # (optax.exponential_decay); 0: constant.
  c.kl_warmup_steps = 0       # > 0: the VAE's KL term is weighted min(1, (step+1) / this)
                              # in the gradient (KL annealing); the logged loss stays -ELBO.
  c.iw_train_samples = 1      # VAE training bound: 1 = the ELBO; k > 1 = the importance-
                              # weighted bound L_k (IWAE), k decoder passes per image.
  c.iw_gradient = "iwae"      # Gradient of that L_k: 'iwae' (plain) or 'dreg' (the doubly
                              # reparameterised encoder estimator; needs iw_train_samples > 1).
  c.latent_prior = ""         # VAE: a fitted p(z) (.npz of experiments/fit_prior.py) to train
                              # against instead of N(0, I); fixed, it is the run's p(z).
  c.frozen = ""               # VAE: '' | 'encoder' | 'decoder', the half whose parameters the
                              # steps leave as they are (e.g. tune the encoder to a prior).
  c.likelihood = "bernoulli"  # VAE decoder: 'bernoulli' (dynamically binarised data) or
                              # 'gaussian' (continuous [0,1] intensities).
  c.iw_samples = 5000         # k of the importance-weighted test bound (experiments/nll.py).
  c.iw_chunk = 500            # Samples per chunk of that bound: bounds memory, divides k.
  c.exclude_label = -1        # >= 0: drop this class from the training split (one-class-
                              # held-out anomaly detection); -1 keeps every class.
  # --- Small labelled training sets (issue 5, generative augmentation). ---
  c.num_train = 0             # > 0: train on the first num_train / C examples of each of the
                              # C classes present (genjax.data.balanced_subset); 0: all.
  return c


def compiler_options(config: ml_collections.ConfigDict) -> dict[str, bool | int | float | str]:
  """`config.xla_options` ('name=value name=value', a leading '--' allowed) as jax.jit's
  `compiler_options`: 'true' / 'false' become bools, numbers numbers, the rest strings.
  Only the syntax is checked here; XLA checks names and values when it compiles
  (`genjax.train.loop.make_epoch_fn` does so once, first)."""
  out = {}
  for item in config.xla_options.split():
    name, sep, value = item.removeprefix("--").partition("=")
    if not sep or not name.startswith("xla_") or not value:
      raise ValueError(f"config.xla_options={config.xla_options!r}: {item!r} is not "
                       "'xla_<option>=<value>' (options are separated by spaces).")
    out[name] = _option_value(value)
  return out


def _option_value(text: str) -> bool | int | float | str:
  if text.lower() in ("true", "false"):
    return text.lower() == "true"
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text


def nan_guard(config: ml_collections.ConfigDict) -> str | None:
  """What the loop's epoch NaN/Inf-checks every step (`config.nan_check`, one of
  `genjax.train.guard.CHECKS`), or None without the guard (nan_policy 'off')."""
  return None if config.nan_policy == "off" else config.nan_check


def available_prng_impls() -> tuple[str, ...]:
  """The PRNG_IMPLS the installed JAX has: threefry always, Philox from jax 0.10.2 on."""
  return PRNG_IMPLS if jax.__version_info__ >= PHILOX_JAX else PRNG_IMPLS[:1]


def use_prng_impl(config: ml_collections.ConfigDict) -> None:
  """Makes `config.prng_impl` JAX's default PRNG, process-wide, so every raw key
  (`jax.random.PRNGKey`) the run makes or restores has that implementation's shape. Called
  by `genjax.train.loop.build`, which every training, benchmark and evaluation path goes
  through."""
  jax.config.update("jax_default_prng_impl", config.prng_impl)


def steps_per_epoch(config: ml_collections.ConfigDict, num_examples: int) -> int:
  """Whole batches per epoch: the remainder is dropped so every step has one shape."""
  steps = num_examples // config.batch_size
  if steps < 1:
    raise ValueError(f"batch_size {config.batch_size} exceeds the {num_examples} training "
                     "examples: no full batch fits in an epoch.")
  return steps


def one_option(options, choices, what: str) -> str | None:
  """The one of `choices` that a config's colon options name (None if none); naming two is
  an error (e.g. `mnist,kmnist`), not a silent pick."""
  chosen = sorted(set(options) & set(choices))
  if len(chosen) > 1:
    raise ValueError(f"Choose one {what} option, got {chosen}.")
  return chosen[0] if chosen else None


def _known_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  out = []
  for k, v in config.items():
    out += _known_keys(v, f"{prefix}{k}.") if isinstance(v, ml_collections.ConfigDict) else [
        prefix + k]
  return out


def override(config: ml_collections.ConfigDict, values: Mapping[str, Any]
             ) -> ml_collections.ConfigDict:
  """Returns a copy with dotted keys (`'model_args.dropout_rate'`) set; unknown keys and
  values of the wrong type raise one error naming the key."""
  out = ml_collections.ConfigDict(config.to_dict())
  known = _known_keys(out)
  for key, value in values.items():
    if key not in known:
      raise KeyError(f"Unknown config key {key!r}. Known keys: {', '.join(sorted(known))}.")
    *parents, leaf = key.split(".")
    node = out
    for p in parents:
      node = node[p]
    old = node[leaf]
    if isinstance(old, bool) != isinstance(value, bool) or (
        not isinstance(value, type(old)) and not (isinstance(old, float)
                                                  and isinstance(value, int))):
      raise TypeError(f"Config key {key!r} expects {type(old).__name__}, got "
                      f"{type(value).__name__} {value!r}.")
    node[leaf] = type(old)(value)
  return out


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the values genjax cannot work with, naming the key."""
  from genjax import data, models  # pylint: disable=import-outside-toplevel
  from genjax.train import ema, guard  # pylint: disable=import-outside-toplevel

  _check_types(config)
  extra = set(_known_keys(config)) - set(_known_keys(base_config()))
  # Model-specific keys under model_args are the only open part.
  extra = {k for k in extra if not k.startswith("model_args.")}
  if extra:
    raise KeyError(f"Unknown config keys {sorted(extra)}; every key must be declared in "
                   "genjax.config.base_config().")
  if config.family not in FAMILIES:
    raise ValueError(f"config.family={config.family!r}; known families: {FAMILIES}.")
  if config.dataset not in data.DATASETS:
    raise ValueError(f"config.dataset={config.dataset!r}; known datasets: {data.DATASETS}.")
  if config.prng_impl not in PRNG_IMPLS:
    raise ValueError(f"config.prng_impl={config.prng_impl!r}; use one of {PRNG_IMPLS}.")
  if config.prng_impl not in available_prng_impls():
    raise ValueError(f"config.prng_impl={config.prng_impl!r} needs jax >= "
                     f"{'.'.join(map(str, PHILOX_JAX))}; this is jax {jax.__version__}. Use "
                     f"one of {available_prng_impls()} or upgrade jax.")
  if config.parallel not in PARALLEL_MODES:
    raise ValueError(f"config.parallel={config.parallel!r}; use one of {PARALLEL_MODES}.")
  models.compute_dtype(config.compute_dtype)
  compiler_options(config)
  for key in ("batch_size", "epochs", "checkpoint_every", "keep_checkpoints", "sample_every",
              "num_grid", "latent_dim", "scan_unroll", "iw_train_samples"):
    if int(config[key]) < 1:
      raise ValueError(f"config.{key} must be >= 1, got {config[key]}.")
  if config.num_devices < 0:
    raise ValueError(f"config.num_devices must be >= 0 (0 = all), got {config.num_devices}.")
  if config.nan_policy not in NAN_POLICIES:
    raise ValueError(f"config.nan_policy={config.nan_policy!r}; use one of {NAN_POLICIES}.")
  if config.nan_check not in guard.CHECKS:
    raise ValueError(f"config.nan_check={config.nan_check!r}; use one of {guard.CHECKS}.")
  if config.num_processes < 0 or config.process_id < -1:
    raise ValueError(f"config.num_processes must be >= 0 (0 = auto) and config.process_id "
                     f">= -1 (-1 = auto), got {config.num_processes} and {config.process_id}.")
  if config.n_critic < 1:
    raise ValueError(f"config.n_critic must be >= 1, got {config.n_critic}.")
  for key in ("r1_gamma", "gp_weight", "ada_kimg", "ada_interval", "lr_halflife_steps",
              "kl_warmup_steps"):
    if config[key] < 0 or (key in ("ada_kimg", "ada_interval") and config[key] == 0):
      raise ValueError(f"config.{key} must be {'> 0' if key.startswith('ada') else '>= 0'}"
                       f", got {config[key]}.")
  if config.iw_train_samples > 1 and config.kl_warmup_steps:
    raise ValueError("config.kl_warmup_steps anneals the ELBO's KL term; the importance-"
                     "weighted bound (config.iw_train_samples > 1) has none: set one of them "
                     "to its default (0 / 1).")
  if config.iw_gradient not in ("iwae", "dreg"):
    raise ValueError(f"config.iw_gradient must be 'iwae' or 'dreg', got {config.iw_gradient!r}.")
  if config.iw_gradient == "dreg" and config.iw_train_samples < 2:
    raise ValueError("config.iw_gradient='dreg' estimates the gradient of the importance-"
                     "weighted bound: set config.iw_train_samples to k > 1.")
  if config.frozen not in VAE_HALVES:
    raise ValueError(f"config.frozen={config.frozen!r}; use one of {VAE_HALVES}.")
  for key in ("latent_prior", "frozen"):
    if config[key] and config.family != "vae":
      raise ValueError(f"config.{key} applies to a VAE, not to config.family="
                       f"{config.family!r}.")
  ema.check_decay(config.ema_decay)
  if not 0.0 <= config.ada_p_init <= 1.0:
    raise ValueError(f"config.ada_p_init must lie in [0, 1], got {config.ada_p_init}.")
  if config.keep_best_mode not in ("min", "max"):
    raise ValueError(f"config.keep_best_mode must be 'min' or 'max', got "
                     f"{config.keep_best_mode!r}.")
  # Likelihood-model keys.
  if config.likelihood not in ("bernoulli", "gaussian"):
    raise ValueError(f"config.likelihood must be 'bernoulli' or 'gaussian', got "
                     f"{config.likelihood!r}.")
  if config.iw_samples < 1 or config.iw_chunk < 1 or (
      config.iw_samples > config.iw_chunk and config.iw_samples % config.iw_chunk):
    raise ValueError(f"config.iw_samples={config.iw_samples} must be a positive multiple of "
                     f"config.iw_chunk={config.iw_chunk}.")
  if not -1 <= config.exclude_label < data.NUM_CLASSES:
    raise ValueError(f"config.exclude_label must be -1 (none) or a class 0..."
                     f"{data.NUM_CLASSES - 1}, got {config.exclude_label}.")
  if config.num_train < 0:
    raise ValueError(f"config.num_train must be >= 0 (0 = the whole split), got "
                     f"{config.num_train}.")
  classes = data.NUM_CLASSES - (config.exclude_label >= 0)
  if config.num_train % classes:
    raise ValueError(f"config.num_train={config.num_train} must be a multiple of the {classes} "
                     f"classes it is balanced over (config.exclude_label="
                     f"{config.exclude_label}).")


def _check_types(config: ml_collections.ConfigDict) -> None:
  """Each declared key must keep its base type (ints may stand for floats), so a value set
  around `override` (e.g. `config.epochs = "3"`) fails here, naming the key."""
  base = base_config()
  for key in _known_keys(base):
    if key.startswith("model_args.") or key not in _known_keys(config):
      continue
    want, got = _get(base, key), _get(config, key)
    if isinstance(want, bool) != isinstance(got, bool) or not (
        isinstance(got, type(want)) or (isinstance(want, float) and isinstance(got, int))):
      raise TypeError(f"Config key {key!r} expects {type(want).__name__}, got "
                      f"{type(got).__name__} {got!r}.")


def _get(config: ml_collections.ConfigDict, dotted: str) -> Any:
  for part in dotted.split("."):
    config = config[part]
  return config


def to_json(config: ml_collections.ConfigDict) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
  """Rebuilds a saved config on top of the base, so keys added since still get defaults."""
  saved = json.loads(text)
  out = base_config()
  for key, value in saved.items():
    out[key] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value
  return out


def load_workdir_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: {workdir!r} is not a genjax work directory "
                            "(train one with experiments/train.py --workdir=...).")
  with open(path) as f:
    return from_json(f.read())
