#!/usr/bin/env bash
# A real one-node Slurm cluster for t2mpi development and CI (Debian, run as root).
#
#   slurm/cluster.sh install   apt-get install slurm-wlm munge libpmix-dev (skipped if present)
#   slurm/cluster.sh start     munged + slurmctld + slurmd, wait until a job runs
#   slurm/cluster.sh stop      cancel jobs, stop our daemons, wait until they are gone
#   slurm/cluster.sh status    which daemons run, sinfo; exit 0 only when healthy
#   slurm/cluster.sh env       print: export SLURM_CONF=...
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

# Clients (sinfo, srun, ...) started from here, and the daemons, use our config.
export SLURM_CONF=$CONF

log() { echo "cluster.sh: $*" >&2; }
die() { echo "cluster.sh: $*" >&2; exit 1; }

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

# Last error line of a log file, for one-line failure messages.
last_error() {
    [[ -r $1 ]] || { echo "(no log yet)"; return; }
    grep -E 'error|fatal' "$1" 2>/dev/null | tail -n 1 || true
}

# Pids of process NAME whose command line names our config file.
our_pids() {
    local pid
    for pid in $(pgrep -x "$1" || true); do
        tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$CONF" && echo "$pid"
    done
    return 0
}

# Pids of slurmstepd processes that belong to our slurmd (they inherit SLURM_CONF).
our_stepd_pids() {
    local pid
    for pid in $(pgrep -x slurmstepd || true); do
        tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qxF -- "SLURM_CONF=$CONF" && echo "$pid"
    done
    return 0
}

no_pids() { [[ -z $("$@") ]]; }

# Send SIGNAL to the pids that "LISTER WHAT" prints.
signal_all() {
    local signal=$1 lister=$2 what=$3 pids
    mapfile -t pids < <("$lister" "$what")
    ((${#pids[@]} == 0)) || kill "-$signal" "${pids[@]}" 2>/dev/null || true
}

# TERM, wait up to STOP_TIMEOUT, then KILL and wait again (bounded).
terminate() {
    local what=$1 lister=$2 pids
    pids=$("$lister" "$what" | tr '\n' ' ')
    [[ -n $pids ]] || return 0
    log "stopping $what (pid ${pids% })"
    signal_all TERM "$lister" "$what"
    wait_until "$STOP_TIMEOUT" no_pids "$lister" "$what" && return 0
    log "$what did not exit after ${STOP_TIMEOUT}s; sending SIGKILL"
    signal_all KILL "$lister" "$what"
    wait_until 5 no_pids "$lister" "$what" \
        || die "$what still runs after SIGKILL (pid $("$lister" "$what" | tr '\n' ' '))"
}

# A pid and all its descendants, parents first.
process_tree() {
    local child
    echo "$1"
    for child in $(pgrep -P "$1" || true); do process_tree "$child"; done
}

# slurmstepd left behind by a crashed slurmd: with proctrack/linuxproc the job's
# processes are its descendants, so kill the whole tree (SIGKILL: the daemons
# that would clean up in order are gone).
orphan_step_pids() {
    local pid
    for pid in $(our_stepd_pids); do process_tree "$pid"; done
}

# Succeeds when none of the pids is a live (non-zombie) process.
none_alive() {
    local pid
    for pid in "$@"; do
        [[ $(ps -o stat= -p "$pid" 2>/dev/null) == Z* || ! -e /proc/$pid ]] || return 1
    done
}

kill_orphan_steps() {
    local pids
    mapfile -t pids < <(orphan_step_pids)
    ((${#pids[@]} > 0)) || return 0
    log "killing leftover job steps and their processes (pid ${pids[*]})"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait_until 5 none_alive "${pids[@]}" || die "job step processes still run after SIGKILL (pid ${pids[*]})"
}

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

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

make_munge_key() {
    [[ -s $MUNGE_KEY ]] && return 0
    log "creating $MUNGE_KEY"
    install -d -o munge -g munge -m 0700 "$(dirname "$MUNGE_KEY")"
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile="$MUNGE_KEY"
    else
        dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
    fi
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
}

start_munge() {
    munge_works && return 0
    if pgrep -x munged >/dev/null; then
        die "munged runs but 'munge -n | unmunge' fails; read $MUNGE_LOG"
    fi
    make_munge_key
    # No systemd here: create what its tmpfiles/unit would.
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    log "starting munged"
    runuser -u munge -- munged </dev/null >/dev/null 2>&1 \
        || die "munged failed to start: $(last_error "$MUNGE_LOG"); read $MUNGE_LOG"
    wait_until 10 munge_works || die "munged does not answer within 10s; read $MUNGE_LOG"
    cat /run/munge/munged.pid >"$MUNGE_MARK" 2>/dev/null || pgrep -x -u munge munged | head -n 1 >"$MUNGE_MARK"
}

stop_munge() {
    [[ -s $MUNGE_MARK ]] || return 0
    local pid
    pid=$(<"$MUNGE_MARK")
    if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == munged ]]; then
        log "stopping munged (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        wait_until "$STOP_TIMEOUT" test ! -e "/proc/$pid" || kill -KILL "$pid" 2>/dev/null || true
        wait_until 5 test ! -e "/proc/$pid" || die "munged still runs after SIGKILL (pid $pid)"
    fi
    rm -f "$MUNGE_MARK"
}

# ---------------------------------------------------------------- config

# RealMemory: MemTotal minus max(512 MiB, 5%), so slurmd never reports less than configured.
real_memory_mb() {
    local total_mb margin
    total_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    margin=$((total_mb / 20))
    ((margin > 512)) || margin=512
    echo $((total_mb - margin))
}

# One NodeName line; uses slurmd -C for the socket/core/thread layout when it agrees with nproc.
node_line() {
    local name=$1 addr=$2 cpus mem hw
    cpus=$(nproc)
    mem=$(real_memory_mb)
    hw=$(slurmd -C 2>/dev/null | head -n 1 || true)
    local layout="CPUs=$cpus"
    if [[ $hw =~ CPUs=([0-9]+).*SocketsPerBoard=([0-9]+).*CoresPerSocket=([0-9]+).*ThreadsPerCore=([0-9]+) ]] \
        && ((BASH_REMATCH[1] == cpus)); then
        layout="CPUs=$cpus Sockets=${BASH_REMATCH[2]} CoresPerSocket=${BASH_REMATCH[3]} ThreadsPerCore=${BASH_REMATCH[4]}"
    fi
    echo "NodeName=$name NodeAddr=$addr $layout RealMemory=$mem State=UNKNOWN"
}

render_conf() {
    local nodes mem_per_cpu tmp
    nodes=$(node_line "$NODE_NAME" "$NODE_ADDR")
    mem_per_cpu=$(($(real_memory_mb) / $(nproc)))
    tmp=$CONF.tmp.$$
    awk -v nodes="$nodes" '{ if ($0 == "@NODE_LINES@") print nodes; else print }' "$TEMPLATE" | sed \
        -e "s|@CONTROL_HOST@|$NODE_NAME|g" \
        -e "s|@CONTROL_ADDR@|$NODE_ADDR|g" \
        -e "s|@STATE_DIR@|$STATE_DIR|g" \
        -e "s|@SLURM_USER@|root|g" \
        -e "s|@SLURMCTLD_PORT@|$CTLD_PORT|g" \
        -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
        -e "s|@DEF_MEM_PER_CPU@|$mem_per_cpu|g" \
        -e "s|@PARTITION_NODES@|$NODE_NAME|g" >"$tmp"
    local left
    left=$(grep -v '^#' "$tmp" | grep -o '@[A-Z_]*@' | head -n 1 || true)
    if [[ -n $left ]]; then
        rm -f "$tmp"
        die "placeholder $left in $TEMPLATE is not rendered by $0"
    fi
    mv -f "$tmp" "$CONF"
    install -m 0644 "$HERE/mpi.conf" "$STATE_DIR/etc/mpi.conf"
}

make_state_dirs() {
    install -d -m 0755 "$STATE_DIR" "$STATE_DIR/etc" "$STATE_DIR/log" "$STATE_DIR/run" "$STATE_DIR/spool"
    install -d -m 0700 "$STATE_DIR/ctld" "$STATE_DIR/spool/$NODE_NAME"
}

# ---------------------------------------------------------------- health

ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

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

job_ids() { squeue -h -o '%A' 2>/dev/null || true; }

no_jobs_left() { [[ -z $(job_ids) ]]; }

cancel_all_jobs() {
    ctld_up || return 0
    local jobs
    mapfile -t jobs < <(job_ids)
    ((${#jobs[@]} > 0)) || return 0
    log "cancelling jobs: ${jobs[*]}"
    scancel "${jobs[@]}" 2>/dev/null || true
    wait_until "$STOP_TIMEOUT" no_jobs_left \
        || log "jobs still listed after ${STOP_TIMEOUT}s: $(job_ids | tr '\n' ' ')"
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
    case ${1:-} in
        install) cmd_install ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        env) cmd_env ;;
        *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
    esac
}

main "$@"
