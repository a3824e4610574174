#!/bin/bash
# One study run by a Slurm job array: 8 tasks, one GPU each, on whichever nodes are free. Each
# task gets its index in SLURM_ARRAY_TASK_ID, which seeds its sampler. Tasks that start late, or
# are requeued after a node failure, join the same study; the trial a lost task was running is
# run again by a live one.
#
#   sbatch docs/examples/scale-out/slurm-array.sh
#   criteria study status docs/examples/scale-out/study.toml     # from the login node
#
#SBATCH --job-name=criteria-study
#SBATCH --array=0-7
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --output=logs/%x-%A_%a.out
set -euo pipefail

# The storage URL holds a password: keep it in a file only you can read, not in this script.
CRITERIA_STORAGE="$(cat "$HOME/.config/criteria/storage-url")"
export CRITERIA_STORAGE
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-http://mlflow.cluster.example:5000}"

# Nodes with several GPUs: ask for --gres=gpu:4 and run `criteria run ... --workers auto`
# instead; task k's workers then take indices 4k .. 4k+3.
srun criteria run docs/examples/scale-out/study.toml --output "outputs/${SLURM_JOB_NAME}"
