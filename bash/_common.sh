# Shared body of the phase-diagram scripts (sourced, not run).
#
# run_phase_diagram SWEEP AXIS [extra `dnn-spring sweep` args...]
#   sweep  ->  collect  ->  plot phase-diagram, all through the dnn-spring CLI.
# Environment (all optional):
#   PRESET    paper (default: the paper's grid, 10 seeds, full epochs) | quick
#   DATASET   override the data set (e.g. mnist5k, digits, mnist, fashionmnist); results
#             and figure names then end in _$DATASET (results/ns_nl_mnist5k, ...)
#   DEVICE    torch device (cpu, cuda, cuda:1, ...)
#   OUTDIR    results folder (default results/<sweep>, results/<sweep>_quick for quick)
#   FIGDIR    figure folder (default figs)
#   WORKERS   local worker processes
#   EXECUTOR  local (default) | slurm | debug
#   WAIT      with EXECUTOR=slurm: 1 follows the job array, then collects and plots;
#             unset, the script submits, prints the commands to run later and returns
#   DRY_RUN   1: print the configs and stop (same as passing --dry-run)
#   DNN_SPRING  the command to run (default dnn-spring), e.g. .venv/bin/dnn-spring

run_phase_diagram() {
    local sweep=$1 axis=$2
    shift 2
    local cmd=${DNN_SPRING:-dnn-spring}
    local preset=${PRESET:-paper}
    local suffix=""
    [[ $preset == paper ]] || suffix="_$preset"
    # another data set gets its own folder and figure: it never mixes into the preset's
    [[ -z ${DATASET:-} ]] || suffix="${suffix}_${DATASET}"
    local outdir=${OUTDIR:-results/${sweep}${suffix}}
    local figdir=${FIGDIR:-figs}
    local args=(sweep "$sweep" --preset "$preset" --out "$outdir" --executor "${EXECUTOR:-local}")
    [[ -z ${DATASET:-} ]] || args+=(--dataset "$DATASET")
    [[ -z ${DEVICE:-} ]] || args+=(--device "$DEVICE")
    [[ -z ${WORKERS:-} ]] || args+=(--workers "$WORKERS")
    local dry=${DRY_RUN:-0}
    for arg in "$@"; do
        [[ $arg != --dry-run ]] || dry=1
    done
    if [[ $dry == 1 ]]; then
        $cmd "${args[@]}" --dry-run "$@"
        return
    fi
    local plot=(plot phase-diagram "${outdir%/}.parquet" --axis "$axis"
                --title "$sweep ($preset)" --out "$figdir/pd_${sweep}${suffix}.png" --pdf)
    if [[ ${EXECUTOR:-local} == slurm && ${WAIT:-0} != 1 ]]; then
        $cmd "${args[@]}" "$@"
        echo "when the array has finished:"
        echo "  $cmd collect $outdir --out ${outdir%/}.parquet"
        echo "  mkdir -p $figdir && $cmd $(printf '%q ' "${plot[@]}")"
        return
    fi
    [[ ${EXECUTOR:-local} != slurm ]] || args+=(--wait)
    # the sweep exits 1 when some runs failed (it names why): the others are still
    # plotted; any other failure stops here
    local rc=0
    $cmd "${args[@]}" "$@" || rc=$?
    (( rc == 0 || rc == 1 )) || return "$rc"
    $cmd collect "$outdir" --out "${outdir%/}.parquet"
    # a table without a successful run is not plotted: `plot` says so and exits 2
    mkdir -p "$figdir"
    $cmd "${plot[@]}"
    return "$rc"
}
