#!/usr/bin/env bash
# CNN dropout sweep at α = 0 (ReLU) on CIFAR-10 3×10×10 (docs/science.md#sweeps, sweep `cnn`).
# Trains the grid (resumable: rerun after a kill), collects the records and
# draws figs/pd_cnn.png.  Environment: PRESET=quick|paper, DATASET, DEVICE,
# OUTDIR, FIGDIR, WORKERS, EXECUTOR=local|slurm, DRY_RUN=1; see _common.sh.
# Extra arguments go to `dnn-spring sweep`, e.g. --set epochs=10 --seeds 2.
#   PRESET=quick bash bash/test_cnn.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
run_phase_diagram cnn dropout "$@"
