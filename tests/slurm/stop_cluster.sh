#!/usr/bin/env bash
# Stop the test Slurm cluster started by start_cluster.sh (munged is left running).
# Cancels all jobs first so no slurmstepd/job processes are left behind.
set -uo pipefail
STATE=${SLURM_STATE:-/tmp/dnn-spring-slurm}

if command -v squeue >/dev/null && timeout 5 scontrol ping >/dev/null 2>&1; then
    jobs=$(timeout 5 squeue -h -o %A 2>/dev/null || true)
    if [[ -n $jobs ]]; then
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null || true
        for _ in $(seq 30); do
            [[ -z $(timeout 5 squeue -h -t R,CG -o %A 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
fi

for d in slurmd slurmctld; do
    pf=$STATE/$d.pid
    if [[ -s $pf ]] && kill -0 "$(cat "$pf")" 2>/dev/null; then
        pid=$(cat "$pf")
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pf"
done
echo "slurm stopped"
