#!/usr/bin/env bash
# Phase diagram: data/label noise p × LeakyReLU slope (docs/science.md#sweeps, sweep `ns_nl`).
# Trains the grid (resumable: rerun after a kill), collects the records and
# draws figs/pd_ns_nl.png.  Environment: PRESET=quick|paper, DATASET, DEVICE,
# OUTDIR, FIGDIR, WORKERS, EXECUTOR=local|slurm, DRY_RUN=1; see _common.sh.
# Extra arguments go to `dnn-spring sweep`, e.g. --set epochs=10 --seeds 2.
#   PRESET=quick bash bash/test_pd_ns_nl.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
run_phase_diagram ns_nl noise "$@"
