#!/usr/bin/env bash
# The proxy report's sweeps: the four MLP panels on mnist5k with trajectories (20 load
# curves per run, each with the clean train accuracy and loss) and the trained weights
# kept, then `dnn-spring report` with the baselines, WeightWatcher and the early forecast.
# Resumable, like every sweep.
#   bash bash/proxy_trajectories.sh                # the quick grids, 3 seeds -> results/proxy_quick/
#   PRESET=paper bash bash/proxy_trajectories.sh   # the paper's grids, 3 seeds -> results/proxy_paper/
# Environment: PRESET (quick), SEEDS (3), PANELS (ns_nl lr_nl dp_nl bm_nl), WORKERS (2),
# DNN_SPRING (default dnn-spring), OUT (results/proxy_$PRESET), FIGDIR (figs/proxy_mnist5k).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cmd=${DNN_SPRING:-dnn-spring}
preset=${PRESET:-quick}
seeds=${SEEDS:-3}
panels=${PANELS:-ns_nl lr_nl dp_nl bm_nl}
out=${OUT:-results/proxy_${preset}}
figdir=${FIGDIR:-figs/proxy_mnist5k}
folders=()
for panel in $panels; do
    start=$(date +%s)
    rc=0  # 1: some runs failed (the sweep names why); the others are still reported
    $cmd sweep "$panel" --preset "$preset" --dataset mnist5k --seeds "$seeds" --trajectory 20 \
        --save-weights --workers "${WORKERS:-2}" --threads 1 --no-progress --out "$out/$panel" || rc=$?
    (( rc == 0 || rc == 1 )) || exit "$rc"
    echo "$panel: $(( $(date +%s) - start )) s wall (this call)"
    folders+=("$out/$panel")
done
mkdir -p "$figdir"
$cmd report "${folders[@]}" --weightwatcher --save-tables "$figdir/${preset}" \
    --csv "$figdir/report_${preset}.csv" --out "$figdir/report_${preset}.png" \
    --forecast-csv "$figdir/forecast_${preset}.csv" --forecast-out "$figdir/forecast_${preset}.png" \
    > "$figdir/report_${preset}.txt"
cat "$figdir/report_${preset}.txt"
