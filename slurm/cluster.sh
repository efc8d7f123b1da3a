#!/usr/bin/env bash
# A real one-node Slurm cluster for t2mpi development and CI (Debian, run as root).
#
#   slurm/cluster.sh install   apt-get install slurm-wlm munge libpmix-dev (skipped if present)
#   slurm/cluster.sh start     munged + slurmctld + slurmd, wait until a job runs
#   slurm/cluster.sh stop      cancel jobs, stop our daemons, wait until they are gone
#   slurm/cluster.sh status    which daemons run, sinfo; exit 0 only when healthy
#   slurm/cluster.sh env       print: export SLURM_CONF=...
#   slurm/cluster.sh --nodes N start|stop|status|env|exec HOST -- CMD...
#                              the multi-node cluster of slurm/multinode.sh (namespaces)
#
# Environment: T2MPI_SLURM_DIR (state dir, default /var/tmp/t2mpi-slurm),
# T2MPI_SLURM_ADDR (address of controller and node, default 127.0.0.1),
# T2MPI_SLURMCTLD_PORT / T2MPI_SLURMD_PORT (6817 / 6818),
# T2MPI_SLURM_START_TIMEOUT / T2MPI_SLURM_STOP_TIMEOUT (seconds, 60 / 30),
# T2MPI_SLURM_KEEP_STATE=1 (start recovers the jobs of the last run instead of clearing them).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NODE_NAME=$(hostname -s)
readonly HERE NODE_NAME
readonly TEMPLATE=$HERE/slurm.conf.in
readonly STATE_DIR=${T2MPI_SLURM_DIR:-/var/tmp/t2mpi-slurm}
readonly CONF=$STATE_DIR/etc/slurm.conf
readonly NODE_ADDR=${T2MPI_SLURM_ADDR:-127.0.0.1}
readonly CTLD_PORT=${T2MPI_SLURMCTLD_PORT:-6817}
readonly SLURMD_PORT=${T2MPI_SLURMD_PORT:-6818}
readonly START_TIMEOUT=${T2MPI_SLURM_START_TIMEOUT:-60}
readonly STOP_TIMEOUT=${T2MPI_SLURM_STOP_TIMEOUT:-30}
readonly CTLD_LOG=$STATE_DIR/log/slurmctld.log
readonly SLURMD_LOG=$STATE_DIR/log/slurmd-$NODE_NAME.log
readonly MUNGE_KEY=/etc/munge/munge.key
readonly MUNGE_LOG=/var/log/munge/munged.log
readonly MUNGE_MARK=$STATE_DIR/run/munged.ours   # pid of the munged this script started
readonly PROG=cluster.sh

# Clients (sinfo, srun, ...) started from here, and the daemons, use our config.
export SLURM_CONF=$CONF

need_root() { [[ $(id -u) == 0 ]] || die "must run as root (it starts munged, slurmctld and slurmd)"; }

missing_binaries() {
    local name missing=()
    for name in slurmctld slurmd munged sbatch; do
        command -v "$name" >/dev/null 2>&1 || missing+=("$name")
    done
    echo "${missing[*]}"
}

need_binaries() {
    local missing
    missing=$(missing_binaries)
    [[ -z $missing ]] || die "not installed: $missing; run: $0 install"
}

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- install

# libpmix-dev: Slurm's mpi/pmix plugin dlopens the unversioned libpmix.so (srun --mpi=pmix).
readonly PACKAGES=(slurm-wlm munge libpmix-dev)

packages_installed() {
    local pkg
    for pkg in "${PACKAGES[@]}"; do
        [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) == "install ok installed" ]] || return 1
    done
}

cmd_install() {
    need_root
    if [[ -z $(missing_binaries) ]] && packages_installed; then
        log "already installed: ${PACKAGES[*]}"
        return 0
    fi
    if ! apt-cache show "${PACKAGES[@]}" >/dev/null 2>&1; then
        apt-get update
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PACKAGES[@]}"
    need_binaries
}

# ---------------------------------------------------------------- munge

# ---------------------------------------------------------------- config

render_conf() { render_slurm_conf "$NODE_NAME" "$NODE_ADDR" "$NODE_NAME" "$(node_line "$NODE_NAME" "$NODE_ADDR")"; }

make_state_dirs() {
    install -d -m 0755 "$STATE_DIR" "$STATE_DIR/etc" "$STATE_DIR/log" "$STATE_DIR/run" "$STATE_DIR/spool"
    install -d -m 0700 "$STATE_DIR/ctld" "$STATE_DIR/spool/$NODE_NAME"
    install -d -m 1777 "$STATE_DIR/tmp" "$STATE_DIR/tmp/$NODE_NAME"
}

# ---------------------------------------------------------------- health

node_state() { sinfo -h -N -n "$NODE_NAME" -o '%T' 2>/dev/null | head -n 1; }

node_usable() { [[ $(node_state) =~ ^(idle|mixed|allocated|completing)$ ]]; }

healthy() {
    [[ -n $(our_pids slurmctld) && -n $(our_pids slurmd) ]] && munge_works && ctld_up && node_usable
}

# ---------------------------------------------------------------- start / stop

start_daemon() {
    local name=$1 log_file=$2 out=$STATE_DIR/log/$1.out
    shift 2
    log "starting $name"
    "$@" </dev/null >>"$out" 2>&1 \
        || die "$name failed to start: $(tail -n 1 "$out"); read $log_file and $out"
}

resume_if_drained() {
    local state reason
    state=$(node_state)
    [[ $state == drain* ]] || return 0
    reason=$(sinfo -h -N -n "$NODE_NAME" -o '%E' 2>/dev/null | head -n 1)
    log "node $NODE_NAME is $state ($reason); resuming it"
    scontrol update NodeName="$NODE_NAME" State=RESUME || true
}

node_ready() { resume_if_drained; node_usable; }

smoke_job() { timeout 30 srun -N1 -n1 -t 1 --quiet true; }

cmd_start() {
    need_root
    need_binaries
    if healthy; then
        log "already running ($CONF)"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    local t0=$SECONDS
    make_state_dirs
    start_munge
    # A half-running cluster (one daemon dead, or stale) is restarted from scratch.
    terminate slurmd our_pids
    terminate slurmctld our_pids
    render_conf
    # -c: start without the jobs of an earlier run (a crash would otherwise requeue them).
    local clear=(-c)
    [[ ${T2MPI_SLURM_KEEP_STATE:-0} == 1 ]] && clear=()
    start_daemon slurmctld "$CTLD_LOG" slurmctld -f "$CONF" "${clear[@]}"
    wait_until "$START_TIMEOUT" ctld_up \
        || die "slurmctld not answering after ${START_TIMEOUT}s: $(last_error "$CTLD_LOG"); read $CTLD_LOG"
    start_daemon slurmd "$SLURMD_LOG" slurmd -f "$CONF" -N "$NODE_NAME"
    wait_until "$START_TIMEOUT" node_ready \
        || die "node $NODE_NAME is '$(node_state)' after ${START_TIMEOUT}s, not idle: $(last_error "$SLURMD_LOG"); read $SLURMD_LOG and $CTLD_LOG"
    smoke_job || die "test job 'srun -N1 -n1 true' failed; read $SLURMD_LOG and $CTLD_LOG"
    log "cluster up in $((SECONDS - t0))s: node $NODE_NAME $(node_state), logs in $STATE_DIR/log"
    echo "export SLURM_CONF=$CONF"
}

cmd_stop() {
    need_root
    [[ -r $CONF ]] && cancel_all_jobs
    terminate slurmd our_pids
    terminate slurmctld our_pids
    kill_orphan_steps
    stop_munge
    log "stopped"
}

cmd_status() {
    local name pids rc=0
    for name in slurmctld slurmd; do
        pids=$(our_pids "$name" | tr '\n' ' ')
        if [[ -n $pids ]]; then echo "$name: running (pid ${pids% })"; else echo "$name: not running"; rc=1; fi
    done
    if munge_works; then
        pids=$(pgrep -x munged | tr '\n' ' ')
        echo "munged: running (pid ${pids% })$([[ -s $MUNGE_MARK ]] && echo ', started by cluster.sh')"
    else
        echo "munged: not running"; rc=1
    fi
    echo "config: $CONF"
    if ctld_up; then sinfo -N -l; node_usable || rc=1; else rc=1; fi
    return "$rc"
}

cmd_env() { echo "export SLURM_CONF=$CONF"; }

main() {
    # The multi-node cluster (network namespaces on this machine) has its own script.
    [[ ${1:-} == --nodes ]] && exec "$HERE/multinode.sh" "$@"
    case ${1:-} in
        install) cmd_install ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        env) cmd_env ;;
        *) echo "usage: $0 install|start|stop|status|env, or $0 --nodes N start|stop|status|env|exec HOST -- CMD..." >&2; exit 2 ;;
    esac
}

main "$@"
