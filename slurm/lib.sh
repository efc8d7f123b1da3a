# Shell helpers shared by cluster.sh, multinode.sh and selftest.sh (sourced, not run).
# The daemon, munge and job helpers use the sourcing script's PROG, CONF, STATE_DIR,
# STOP_TIMEOUT, MUNGE_KEY, MUNGE_LOG and MUNGE_MARK.

# Poll "$@" every 0.2 s until it succeeds; return 1 after $1 seconds.
wait_until() {
    local timeout=$1 deadline
    shift
    deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

log() { echo "$PROG: $*" >&2; }
die() { echo "$PROG: $*" >&2; exit 1; }

# Slurm client commands (scontrol, sinfo, squeue, srun, scancel) go through `client`: here
# directly; multinode.sh redefines it to run them inside the login namespace.
client() { "$@"; }


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
    local running
    running=$(pgrep -x munged || true)
    if [[ -n $running ]] && ! none_alive $running; then   # zombies do not count
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
    local other
    other=$(pgrep -x 'slurmctld|slurmd' || true)
    if [[ -n $other ]] && ! none_alive $other; then
        # the other cluster (cluster.sh / multinode.sh) still runs and uses it
        log "leaving munged (pid $pid) running: other Slurm daemons use it"
    elif [[ $(cat "/proc/$pid/comm" 2>/dev/null) == munged ]]; then
        log "stopping munged (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        wait_until "$STOP_TIMEOUT" test ! -e "/proc/$pid" || kill -KILL "$pid" 2>/dev/null || true
        wait_until 5 test ! -e "/proc/$pid" || die "munged still runs after SIGKILL (pid $pid)"
    fi
    rm -f "$MUNGE_MARK"
}


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


# $CONF from the template: controller NAME and ADDRESS, the partition's node list, NODE_LINES.
render_slurm_conf() {
    local host=$1 addr=$2 partition=$3 nodes=$4 mem_per_cpu tmp
    mem_per_cpu=$(($(real_memory_mb) / $(nproc)))
    tmp=$CONF.tmp.$$
    awk -v nodes="$nodes" '{ if ($0 == "@NODE_LINES@") print nodes; else print }' "$TEMPLATE" | sed \
        -e "s|@CONTROL_HOST@|$host|g" \
        -e "s|@CONTROL_ADDR@|$addr|g" \
        -e "s|@STATE_DIR@|$STATE_DIR|g" \
        -e "s|@SLURM_USER@|root|g" \
        -e "s|@SLURMCTLD_PORT@|$CTLD_PORT|g" \
        -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
        -e "s|@DEF_MEM_PER_CPU@|$mem_per_cpu|g" \
        -e "s|@PARTITION_NODES@|$partition|g" >"$tmp"
    local left
    left=$(grep -v '^#' "$tmp" | grep -o '@[A-Z_]*@' | head -n 1 || true)
    if [[ -n $left ]]; then
        rm -f "$tmp"
        die "placeholder $left in $TEMPLATE is not rendered by $0"
    fi
    mv -f "$tmp" "$CONF"
    install -m 0644 "$HERE/mpi.conf" "$STATE_DIR/etc/mpi.conf"
}

ctld_up() { client scontrol ping 2>/dev/null | grep -q 'is UP'; }


job_ids() { client squeue -h -o '%A' 2>/dev/null || true; }

no_jobs_left() { [[ -z $(job_ids) ]]; }

cancel_all_jobs() {
    ctld_up || return 0
    local jobs
    mapfile -t jobs < <(job_ids)
    ((${#jobs[@]} > 0)) || return 0
    log "cancelling jobs: ${jobs[*]}"
    client scancel "${jobs[@]}" 2>/dev/null || true
    wait_until "$STOP_TIMEOUT" no_jobs_left \
        || log "jobs still listed after ${STOP_TIMEOUT}s: $(job_ids | tr '\n' ' ')"
}
