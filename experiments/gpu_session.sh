#!/bin/bash
# The GPU rows of issues 5 and 6 (RESULTS.md, "GPU rows: one NVIDIA H200") as one
# prepared device-tool call, so a session that is lent an accelerator spends its minutes on
# measuring, not on setting up.
#
# Here, once per checkout (copies the MNIST IDX files, the feature classifier and the wheels
# the device image lacks into .gpu_carry/, which .git/info/exclude keeps out of git):
#   GENJAX_DATA_DIR=../shared/data bash experiments/gpu_session.sh prepare
# Then one device call: run(command="bash experiments/gpu_session.sh", carry=[".gpu_carry"],
# timeout_s=590). Stages, in order of priority, each under its own time limit; all results
# come back as $OUT/results.tar.gz plus $OUT/log.txt:
#   bench     issue 6 Must show 1: MLP GAN whole epochs, batch 64 and 1024, fp32 and bf16,
#             with the NaN guard (each config.nan_check) and without, beside the
#             tutorial-style, resident and tuned resident PyTorch baselines (on CUDA)
#   models    issue 6 Must show 3: DCGAN / MLP VAE / conv VAE / PixelCNN steps/s beside
#             their resident PyTorch equivalents
#   quality   issue 6 Must show 1: the reference GAN's 50 epochs in fp32 and in bf16, each
#             scored with FID / KID / coverage (issue 5 Must show 1 gets a GPU seed too)
# Not in the default list: `bench_graphs`, the bench stage's MLP GAN epochs again with XLA's
# command buffers for while loops (each epoch's scan one CUDA graph), beside the tutorial
# baseline; on the H200 (2026-11-30) within 2 % of the default rows. `bench_fused`: the same
# epochs with D's update on real and fake as one batch (--config.d_joint_batch), with four
# steps per scan iteration (--config.scan_unroll=4), with each network's Adam on one flat
# vector (--config.flatten_optimizer), with all three and with all three on the Philox PRNG,
# beside the plain rows and the tutorial; `bench_fused_cublas` its plain and all-three rows
# with cuBLAS's products (next); both ran on the H200 on 2026-12-04 (RESULTS.md).
# `bench_cublas`: the epochs of `bench_graphs` with the matrix products through cuBLAS, not
# XLA's Triton GEMM fusions (--xla_gpu_enable_triton_gemm=false; slower at batch 64 on the
# H200, 2026-12-04). `bench_highest`: genjax's fp32 epochs with full fp32 matrix products
# (JAX_DEFAULT_MATMUL_PRECISION=highest; JAX's default multiplies fp32 in TF32 on the GPU,
# PyTorch's does not) beside the tutorial and the tuned resident baseline (run on the H200 on
# 2026-12-04). `bench_concurrent` (prepared 2026-12-04, not yet run): the epochs with XLA's
# CONCURRENT command-buffer scheduling (--config.xla_options), with G's two forward passes as
# one (--config.g_joint_batch), and both with D's joint pass; `bench_concurrent_graphs` the
# best of those with +WHILE command buffers too; `profile_concurrent` traces the default and
# that best epoch (kernels per step, their overlap, the GPU's idle share). `bench_tiling`
# (prepared 2026-12-04, fifth session, not yet run): the batch-64 epochs with XLA's
# exhaustive search over Triton GEMM tilings for the step's small products, alone and with
# CONCURRENT scheduling and both joint passes.
# `bash experiments/gpu_session.sh vae_gated` (or `vae_conv`, `pixelcnn`, `gated_pixelcnn`; a
# call of its own, in a session with the device time for it) trains that model for as many
# epochs as TRAIN_SECONDS (default 270, so that the four 60 s parts of the evaluation fit the
# 570 s call) allows and scores the test set: IW k=5000 for the VAEs, exact for PixelCNN
# (issue 5, Must show 2 and 3: <= 82 and <= 81.3 nats). TRAIN_FLAGS adds train.py flags to that training, e.g.
# TRAIN_FLAGS=--config.iw_train_samples=5 for the importance-weighted (IWAE) objective;
# add --config.ema_decay=0.999 to score the parameters' moving average (nll.py's default).
# LATENT_PRIOR=1 (VAEs) fits a Gaussian-mixture prior to the trained model's aggregate
# posterior (experiments/fit_prior.py, up to 120 s) and scores the test set with it (give it
# the time: TRAIN_SECONDS=150); LATENT_PRIOR=flow a RealNVP flow prior instead
# (fit_prior.py --family=flow).
# GPU_SESSION_SECONDS (default 570) bounds the whole call: a stage gets what is left, later
# stages are skipped, and results.tar.gz is rewritten after every stage.
# SMOKE=1 runs every stage with tiny sizes on whatever device is there (checked on CPU), with
# four times the time limits.
set -u
cd "$(dirname "$0")/.."
CARRY=.gpu_carry

prepare() {
  mkdir -p .git/info && touch .git/info/exclude
  grep -qx "/$CARRY/" .git/info/exclude || echo "/$CARRY/" >> .git/info/exclude
  local data="${GENJAX_DATA_DIR:?set GENJAX_DATA_DIR to the folder holding mnist/}"
  local cache="${GENJAX_CACHE_DIR:-$HOME/.cache/genjax}/classifiers/mnist"
  mkdir -p "$CARRY/data/mnist" "$CARRY/cache/classifiers" "$CARRY/whl"
  cp "$data"/mnist/*-ubyte.gz "$CARRY/data/mnist/"
  [ -d "$cache" ] || { echo "no MNIST classifier at $cache: run experiments/train_classifier.py --dataset mnist"; exit 1; }
  cp -r "$cache" "$CARRY/cache/classifiers/"
  # The device image has jax, flax, optax, orbax, absl, torch; not these two (pure Python).
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 -d "$CARRY/whl" \
    ml_collections==1.1.0 tensorboardX==2.6.2.2
  du -sh "$CARRY"
}

stage() {  # stage NAME SECONDS CMD...: CMD under min(SECONDS, time left), then pack results.
  local name=$1 limit=$(( $2 * SCALE )); shift 2
  local left=$(( BUDGET - SECONDS - 15 ))
  if [ "$left" -lt 20 ]; then echo "=== $name skipped: ${left}s of the ${BUDGET}s budget left"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s) $(date -u +%H:%M:%S)"
  timeout -k 10 "$limit" "$@"
  echo "=== $name rc=$? wall=$((SECONDS - t0))s"
  # After every stage, so a cut-off call loses nothing; weights and sample .npz stay behind
  # (checkpoints would push the archive past the 16 MiB a returned file may have).
  tar --exclude=checkpoints --exclude='*.npz' -czf "$OUT/results.tar.gz" -C "$R" .
}

setup_run() {
  if ls "$CARRY"/whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/gpu_site "$CARRY"/whl/*.whl
  fi
  export PYTHONPATH=".:/tmp/gpu_site" PYTHONUNBUFFERED=1
  export GENJAX_DATA_DIR="${GENJAX_DATA_DIR:-$CARRY/data}" GENJAX_CACHE_DIR="${GENJAX_CACHE_DIR:-$CARRY/cache}"
  if [ "$SMOKE" = 1 ]; then
    STEPS="--steps=3"; MODEL_STEPS="--steps=2"; EPOCHS="--config.epochs=1"; NUM=500
    PROFILE_STEPS=2
    BATCHES=64; MODELS="dcgan.py:smoke vae_mlp.py:smoke vae_conv.py:smoke pixelcnn.py:smoke"
  else
    STEPS="--repeats=3"; MODEL_STEPS="--steps=50"; EPOCHS=""; NUM=10000
    PROFILE_STEPS=200
    BATCHES=64,1024; MODELS="dcgan.py:mnist vae_mlp.py vae_conv.py pixelcnn.py"
  fi
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
  python3 -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'optax', optax.__version__)"
}

bench() {
  stage bench_mlp_gan 240 python3 experiments/bench.py --config=experiments/configs/mlp_gan.py:mnist \
    --batch_sizes=$BATCHES --dtypes=float32,bfloat16 --nan_policies=stop,off \
    --nan_checks=metrics,parameters \
    --baselines=torch_tutorial,torch_resident,torch_resident_tuned $STEPS --out="$R/bench_mlp_gan"
}

models() {
  for cfg in $MODELS; do
    local name=${cfg%%.py*}
    stage "bench_$name" 75 python3 experiments/bench.py --config="experiments/configs/$cfg" \
      $MODEL_STEPS --out="$R/bench_$name"
  done
}

bench_with_xla_flags() {  # bench_with_xla_flags NAME SECONDS FLAGS [BENCH_ARGS...]: the MLP
  # GAN's epochs under FLAGS ('' for none; any further bench.py flags after them), beside the
  # tutorial, which is timed first (a stage cut off among the genjax rows keeps it).
  local name=$1 seconds=$2 xla="${XLA_FLAGS:+$XLA_FLAGS }$3"; shift 3
  # No XLA_FLAGS at all when both are empty: XLA reads a blank value as a file name.
  stage "$name" "$seconds" env ${xla:+"XLA_FLAGS=$xla"} \
    python3 experiments/bench.py --config=experiments/configs/mlp_gan.py:mnist \
    --batch_sizes=$BATCHES --dtypes=float32,bfloat16 --baselines=torch_tutorial \
    --baseline_batch_sizes=64 --baselines_first $STEPS "$@" --out="$R/$name"
}

bench_graphs() {  # issue 6 Must show 1 again, each epoch's whole lax.scan as one CUDA graph
  # (XLA's command buffers for while loops and conditionals; XLA's default leaves them out).
  bench_with_xla_flags bench_graphs 150 --xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL
}

bench_cublas() {  # issue 6 Must show 1 again, the matrix products through cuBLAS instead of
  # XLA's Triton GEMM fusions (the H200 profile's largest batch-64 kernels, ~10 us a call).
  bench_with_xla_flags bench_cublas 150 --xla_gpu_enable_triton_gemm=false
}

bench_highest() {  # issue 6 Must show 1, fp32 on both sides: genjax's products in full fp32
  # as PyTorch's are by default (bench.json records each side's fp32 matmul precision).
  stage bench_highest 200 env JAX_DEFAULT_MATMUL_PRECISION=highest \
    python3 experiments/bench.py --config=experiments/configs/mlp_gan.py:mnist \
    --batch_sizes=$BATCHES --dtypes=float32 --baselines=torch_tutorial,torch_resident_tuned \
    $STEPS --out="$R/bench_highest"
}

bench_fused() {  # issue 6 Must show 1, fewer and larger kernels per step: D on real and fake
  # as one batch (config.d_joint_batch); four steps per iteration of the epoch's scan
  # (config.scan_unroll: a quarter of the loop's iterations, each ending in the while loop's
  # predicate test); each network's Adam on one flat vector (config.flatten_optimizer); all
  # three; all three with the Philox PRNG; beside the plain rows (the default NaN guard) and
  # the tutorial baseline.
  bench_with_xla_flags bench_fused 420 "" --variants="$FUSED,$FUSED;prng_impl=philox4x32,\
d_joint_batch=True,scan_unroll=4,flatten_optimizer=True"
}

bench_concurrent() {  # issue 6 Must show 1, prepared 2026-12-04 (not yet run): independent
  # kernels of a step side by side (config.xla_options: the epoch's command buffers in XLA's
  # CONCURRENT scheduling mode, not the default LHS order) and G's two forward passes as one
  # (config.g_joint_batch), alone and with D's joint pass, beside the plain rows and the
  # tutorial.
  bench_with_xla_flags bench_concurrent 420 "" --variants="$CONCURRENT,g_joint_batch=True,\
$JOINT,$CONCURRENT;$JOINT,$CONCURRENT;d_joint_batch=True"
}

profile_concurrent() {  # the default epoch and the CONCURRENT + joint-passes one traced
  # (jax.profiler, first PROFILE_STEPS batches): kernels per step, their overlap (busy /
  # active > 1) and the GPU's idle share (active / span), in $R/profile_*/profile.md.
  profile_stage profile_default
  profile_stage profile_concurrent "--config.xla_options=$CONCURRENT_OPTION" \
    --config.d_joint_batch=True --config.g_joint_batch=True
}

profile_stage() {  # profile_stage NAME [CONFIG_FLAGS...]: one traced MLP GAN epoch.
  local name=$1; shift
  stage "$name" 60 python3 experiments/bench.py --config=experiments/configs/mlp_gan.py:mnist \
    --profile_dir="/tmp/genjax_$name" --steps=$PROFILE_STEPS "$@" --out="$R/$name"
}

bench_concurrent_graphs() {  # bench_concurrent's best candidates with each epoch's whole scan
  # in one CUDA graph as well (+WHILE command buffers; XLA_FLAGS, not a per-program option).
  bench_with_xla_flags bench_concurrent_graphs 200 \
    "--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL" --variants="$CONCURRENT;$JOINT"
}

bench_tiling() {  # issue 6 Must show 1, prepared 2026-12-04 (not yet run): batch 64 only,
  # the largest gap to its target. XLA's autotuner times each GEMM fusion's tilings from a set
  # pruned to near its default ones; xla_gpu_exhaustive_tiling_search times its whole search
  # space (tile sizes, split-K, warps, stages), at a longer compile. The profile of 2026-11-30
  # found the batch-64 GEMM fusions the step's largest kernels, about 10 us a call.
  bench_with_xla_flags bench_tiling 300 "" --batch_sizes=64 \
    --variants="$TILING,$TILING $CONCURRENT_OPTION;$JOINT"
}

bench_fused_cublas() {  # bench_fused's plain and all-three rows again, the matrix products
  # through cuBLAS (--xla_gpu_enable_triton_gemm=false), beside the tutorial.
  bench_with_xla_flags bench_fused_cublas 200 --xla_gpu_enable_triton_gemm=false \
    --variants="$FUSED"
}

quality() {
  for dt in float32 bfloat16; do
    local w="$R/mlp_gan_mnist50_$dt"
    stage "train_mlp_gan_$dt" 90 python3 experiments/train.py --config=experiments/configs/mlp_gan.py:mnist \
      --config.compute_dtype=$dt --config.sample_every=10 --config.progress_bar=False \
      --config.tensorboard=False $EPOCHS --workdir="$w"
    stage "eval_mlp_gan_$dt" 60 python3 experiments/evaluate.py --workdir "$w" --num $NUM \
      --out "$R/eval_mlp_gan_mnist50_$dt.json"
  done
}

likelihood_run() {  # likelihood_run NAME CONFIG: train for TRAIN_SECONDS, then the test
  # NLL (VAEs: IW k=5000; PixelCNN: exact) in four parts of 2500 images, each its own stage
  # (a part cut off by the budget loses only itself), merged over the parts that finished.
  local name=$1 cfg=$2 w="$R/$1" seconds="${TRAIN_SECONDS:-270}" k=5000 part=2500
  [ "$SMOKE" = 1 ] && { seconds=30; cfg="$cfg:smoke"; k=10; part=100; }
  stage "train_$name" "$seconds" python3 experiments/train.py --config="experiments/configs/$cfg" \
    --config.progress_bar=False --config.tensorboard=False $EPOCHS ${TRAIN_FLAGS:-} --workdir="$w"
  local prior=() fit=(--components=5,10,20,50)
  [ "$SMOKE" = 1 ] && fit=(--components=1,3 --heldout=300)
  [ "${LATENT_PRIOR:-0}" = flow ] && fit=(--family=flow)
  [ "${LATENT_PRIOR:-0}" = flow ] && [ "$SMOKE" = 1 ] && fit=(--family=flow --flow_steps=20 \
    --flow_hidden=16 --heldout=300)
  if [ "${LATENT_PRIOR:-0}" != 0 ] && [[ "$name" != *pixelcnn ]]; then
    stage "fit_prior_$name" 120 python3 experiments/fit_prior.py --workdir="$w" "${fit[@]}"
    prior=(--latent_prior="$w/latent_prior.npz")
  fi
  local parts=()
  for start in 0 $part $((2 * part)) $((3 * part)); do
    local out="$R/nll_${name}_from$start.json"
    stage "nll_${name}_from$start" 60 python3 experiments/nll.py --workdir="$w" \
      --iw_samples=$k --start=$start --num_test=$part --per_image "${prior[@]}" --out="$out"
    [ -f "$out" ] && parts+=("$out")
  done
  [ ${#parts[@]} -gt 0 ] && stage "nll_${name}_merged" 30 python3 experiments/nll.py \
    --merge="$(IFS=,; echo "${parts[*]}")" --out="$R/nll_${name}.json"
}

vae_conv() { likelihood_run vae_conv vae_conv.py; }
vae_gated() { likelihood_run vae_gated vae_gated.py; }
pixelcnn() { likelihood_run pixelcnn pixelcnn.py; }
gated_pixelcnn() { likelihood_run gated_pixelcnn gated_pixelcnn.py; }

if [ "${1:-}" = prepare ]; then prepare; exit; fi
for s in ${*:-}; do
  case $s in
    bench|bench_graphs|bench_cublas|bench_highest|bench_fused|bench_fused_cublas|models|quality) ;;
    bench_concurrent|bench_concurrent_graphs|profile_concurrent|bench_tiling) ;;
    vae_conv|vae_gated|pixelcnn|gated_pixelcnn) ;;
    *) echo "unknown stage $s (prepare, bench, bench_graphs, bench_cublas, bench_highest," \
         "bench_fused, bench_fused_cublas, bench_concurrent, bench_concurrent_graphs," \
         "profile_concurrent, bench_tiling, models," \
         "quality, vae_conv, vae_gated, pixelcnn, gated_pixelcnn)"; exit 2 ;;
  esac
done
OUT="${OUT:-runs/gpu_session}"; R="$OUT/r"; mkdir -p "$R"
FUSED="d_joint_batch=True;scan_unroll=4;flatten_optimizer=True"
CONCURRENT_OPTION="xla_gpu_command_buffer_scheduling_mode=CONCURRENT"
CONCURRENT="xla_options=$CONCURRENT_OPTION"
TILING="xla_options=xla_gpu_exhaustive_tiling_search=true"
JOINT="d_joint_batch=True;g_joint_batch=True"
SMOKE="${SMOKE:-0}"; SCALE=1; [ "$SMOKE" = 1 ] && SCALE=4
BUDGET="${GPU_SESSION_SECONDS:-570}"  # keep under the device call's timeout_s
[ "$SMOKE" = 1 ] && BUDGET=$(( BUDGET * SCALE ))
exec > >(tee -a "$OUT/log.txt") 2>&1
setup_run
for s in ${*:-bench models quality}; do $s; done
rm -rf "$R"
ls -la "$OUT"
