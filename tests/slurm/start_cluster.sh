#!/usr/bin/env bash
# Start (idempotently) a one-node Slurm cluster on this machine for tests.
#   tests/slurm/start_cluster.sh        -> prints "slurm ready" on success
# Env: SLURM_STATE (default /tmp/dnn-spring-slurm)  state/spool/log dir
#      SLURM_START_TIMEOUT (default 60)             seconds to wait for the node
#      SLURM_NODENAME (default `hostname -s`)       node name
# Needs root (installs packages, writes /etc/slurm/slurm.conf, runs daemons).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${SLURM_STATE:-/tmp/dnn-spring-slurm}
TIMEOUT=${SLURM_START_TIMEOUT:-60}
CONF=/etc/slurm/slurm.conf

die() { echo "start_cluster.sh: ERROR: $*" >&2; exit 1; }

pid_alive() { # pidfile
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

node_state() {
    timeout 5 sinfo -h -o %T 2>/dev/null | head -n1 || true
}

node_ready() {
    case "$(node_state)" in
        idle|mixed|allocated|completing) return 0 ;;
    esac
    return 1
}

show_logs() {
    for f in "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log"; do
        echo "----- tail $f -----" >&2
        tail -n 40 "$f" >&2 2>/dev/null || echo "(missing)" >&2
    done
}

# ---------------------------------------------------------------- render config
NODENAME=${SLURM_NODENAME:-$(hostname -s)}
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.95}' /proc/meminfo)
render() {
    sed -e "s|@NODENAME@|$NODENAME|g" -e "s|@CPUS@|$CPUS|g" \
        -e "s|@REALMEM@|$MEM_MB|g" -e "s|@STATE@|$STATE|g" "$HERE/slurm.conf"
}
RENDERED=$(render)

# ------------------------------------------------------------------- fast path
if command -v sinfo >/dev/null 2>&1 && [[ -f $CONF ]] \
   && [[ "$(cat "$CONF")" == "$RENDERED" ]] \
   && pid_alive "$STATE/slurmctld.pid" && pid_alive "$STATE/slurmd.pid" \
   && node_ready; then
    echo "slurm ready"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "cluster is not up and starting it needs root"

# ------------------------------------------------------------------ (a) install
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
   || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    echo "installing slurm-wlm and munge with apt-get ..." >&2
    { apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; } \
      || die "apt-get install slurm-wlm munge failed (no network / no apt?)"
fi

# -------------------------------------------------------------------- (b) munge
if ! (munge -n | unmunge) >/dev/null 2>&1; then
    mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        fi
    fi
    chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
    chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key; chmod 755 /run/munge
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged \
        || /usr/sbin/munged --force \
        || die "could not start munged (see /var/log/munge/munged.log)"
    for _ in $(seq 50); do (munge -n | unmunge) >/dev/null 2>&1 && break; sleep 0.1; done
    (munge -n | unmunge) >/dev/null 2>&1 || die "munged started but munge -n | unmunge fails"
fi

# ------------------------------------------------- stop stale/misconfigured daemons
stop_pidfile() { # pidfile
    if pid_alive "$1"; then
        local pid; pid=$(cat "$1")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$1"
}
stop_pidfile "$STATE/slurmd.pid"
stop_pidfile "$STATE/slurmctld.pid"

# ------------------------------------------------------------------- (c) config
mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" "$STATE/log"
rm -rf "${STATE:?}/d/"*          # stale slurmd spool from a previous run
printf '%s\n' "$RENDERED" > "$CONF"
chmod 644 "$CONF"

# ------------------------------------------------------------------ (d) daemons
t0=$(date +%s)
slurmctld -c || { show_logs; die "slurmctld failed to start"; }
slurmd -N "$NODENAME" || { show_logs; die "slurmd failed to start"; }

# --------------------------------------------------------------------- (e) wait
while ! node_ready; do
    if (( $(date +%s) - t0 > TIMEOUT )); then
        echo "node state after ${TIMEOUT}s: '$(node_state)'" >&2
        show_logs; die "timed out waiting for node $NODENAME to become idle"
    fi
    if ! pid_alive "$STATE/slurmctld.pid" || ! pid_alive "$STATE/slurmd.pid"; then
        sleep 1   # pid files appear shortly after daemonizing
        if ! pid_alive "$STATE/slurmctld.pid" || ! pid_alive "$STATE/slurmd.pid"; then
            show_logs; die "a slurm daemon exited during start-up"
        fi
    fi
    sleep 0.5
done

# -------------------------------------------------------------------- (f) ready
echo "slurm ready"
