#!/usr/bin/env bash
# forget-jax on a Cloud TPU VM slice (single host or multi-host pod): create, copy, install,
# run on every worker at once, delete. See launch/README.md for sizes and memory.
#
#   export TPU_NAME=forget-v4 ZONE=us-central2-b ACCELERATOR_TYPE=v4-32 PROJECT=my-project
#   launch/tpu_pod.sh create            # gcloud compute tpus tpu-vm create
#   launch/tpu_pod.sh copy              # repo (+ ../shared/data if present) to every worker
#   launch/tpu_pod.sh setup             # venv + jax[tpu] + forget-jax on every worker
#   launch/tpu_pod.sh run --config=configs/forget.py:task=rte,model=llama-2-7b \
#       --config.precision=bfloat16 --config.mesh.fsdp=16 --workdir=/mnt/shared/runs/rte
#   launch/tpu_pod.sh dry-run --config=configs/forget.py:task=rte,model=llama-2-7b \
#       --config.precision=bfloat16 --config.mesh.fsdp=16
#   launch/tpu_pod.sh ssh 'tail -n 50 ~/forget-jax.log'   # any command on all workers
#   launch/tpu_pod.sh delete
#
# Every worker runs the same `python main.py ...`; `--config.distributed.auto=True` makes each
# call `jax.distributed.initialize()` with no arguments (Cloud TPU provides the coordinator,
# process count and ids). The workdir must be one directory that all workers see (Filestore /
# NFS mounted at the same path): Orbax writes each host's shards into the same checkpoint, and
# process 0 alone writes results, predictions and TensorBoard.
set -euo pipefail

: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-v4-8}
RUNTIME_VERSION=${RUNTIME_VERSION:-tpu-ubuntu2204-base}
PROJECT_FLAG=${PROJECT:+--project=$PROJECT}
REMOTE_DIR=${REMOTE_DIR:-forget-jax}           # relative to each worker's home directory
REPO=$(cd "$(dirname "$0")/.." && pwd)

gtpu() { gcloud compute tpus tpu-vm "$@" --zone="$ZONE" ${PROJECT_FLAG:-}; }
on_all() { gtpu ssh "$TPU_NAME" --worker=all --command="$1"; }
quote() { printf '%q ' "$@"; }

cmd=${1:-help}
shift || true
case "$cmd" in
  create)
    gtpu create "$TPU_NAME" --accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION"
    ;;
  copy)
    tarball=$(mktemp -d)/forget-jax.tgz
    # Tracked files only (git archive), plus the staged task data when it sits beside the repo.
    (cd "$REPO" && git archive --format=tar.gz --prefix="$REMOTE_DIR/" -o "$tarball" HEAD)
    gtpu scp "$tarball" "$TPU_NAME:~/" --worker=all
    if [ -d "$REPO/../shared/data" ]; then
      data=$(dirname "$tarball")/data.tgz
      tar -czf "$data" -C "$REPO/../shared" data
      gtpu scp "$data" "$TPU_NAME:~/" --worker=all
      on_all "mkdir -p ~/shared && tar -xzf ~/data.tgz -C ~/shared"
    fi
    on_all "tar -xzf ~/forget-jax.tgz -C ~"
    ;;
  setup)
    on_all "python3 -m venv ~/venv && ~/venv/bin/pip install -q -U pip && \
      ~/venv/bin/pip install -q 'jax[tpu]>=0.10.2,<0.11' && ~/venv/bin/pip install -q -e ~/$REMOTE_DIR"
    ;;
  run)
    # All workers start together; stdout/stderr of each go to ~/forget-jax.log on that worker.
    args=$(quote "$@")
    on_all "cd ~/$REMOTE_DIR && FORGET_JAX_DATA_DIR=\$HOME/shared/data \
      ~/venv/bin/python main.py $args --config.distributed.auto=True 2>&1 | tee ~/forget-jax.log"
    ;;
  dry-run)
    # Compiles the real program on the slice's own devices and prints per-device memory.
    args=$(quote "$@")
    on_all "cd ~/$REMOTE_DIR && ~/venv/bin/python main.py $args --config.dry_run=True \
      --config.distributed.auto=True --workdir=/tmp/forget-jax-dry-run"
    ;;
  ssh)
    on_all "$*"
    ;;
  delete)
    gtpu delete "$TPU_NAME" --quiet
    ;;
  *)
    sed -n '2,20p' "$0"
    exit 2
    ;;
esac
