#!/usr/bin/env bash
# The paper's four MLP phase-diagram panels (docs/science.md#sweeps grids, 100 or 200 epochs)
# on the embedded real MNIST (mnist5k), then the four-panel figure, the
# curvature maps and the collected tables under figs/.  Resumable: rerun after a
# kill, or with more SEEDS later (the first seeds are kept and not retrained).
#   bash bash/paper_figures.sh                 # 3 seeds, all four panels
#   SEEDS=5 PANELS="ns_nl lr_nl" bash bash/paper_figures.sh
#   FIGURES_ONLY=1 bash bash/paper_figures.sh  # redraw from the committed tables
# Environment: SEEDS (3), PANELS (ns_nl lr_nl dp_nl bm_nl), WORKERS, DEVICE,
# DNN_SPRING (default dnn-spring), FIGURES_ONLY=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cmd=${DNN_SPRING:-dnn-spring}
seeds=${SEEDS:-3}
panels=${PANELS:-ns_nl lr_nl dp_nl bm_nl}
export DATASET=mnist5k PRESET=paper DNN_SPRING=$cmd FIGDIR=figs/paper_mnist5k
declare -A axis=([ns_nl]=noise [lr_nl]=lr [dp_nl]=dropout [bm_nl]=batch_size)
tables=()
for panel in $panels; do
    table=figs/paper_mnist5k/${panel}.parquet
    if [[ ${FIGURES_ONLY:-0} != 1 ]]; then
        start=$(date +%s)
        bash "bash/test_pd_${panel}.sh" --seeds "$seeds" --no-progress
        echo "$panel: $(( $(date +%s) - start )) s wall (this call)"
        mkdir -p figs/paper_mnist5k
        cp "results/${panel}_mnist5k.parquet" "$table"
    fi
    tables+=("$table")
    $cmd plot curvature "$table" --axis "${axis[$panel]}" --title "$panel, mnist5k: curvature c" \
        --out "figs/paper_mnist5k/curv_${panel}.png"
    $cmd plot curvature "$table" --axis "${axis[$panel]}" --value c_pinv32 \
        --title "$panel, mnist5k: c with the float32 pinv metric" \
        --out "figs/paper_mnist5k/curv_${panel}_pinv32.png"
done
if [[ ${#tables[@]} == 4 ]]; then
    $cmd plot four-panel "${tables[@]}" --out figs/paper_mnist5k/pd_four_panel.png
    $cmd plot four-panel "${tables[@]}" --curve log_d_pinv32 \
        --out figs/paper_mnist5k/pd_four_panel_pinv32.png
fi
