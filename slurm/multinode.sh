#!/usr/bin/env bash
# A real multi-node Slurm cluster on one machine (Debian, run as root): every host is a
# network + UTS + mount namespace with its own address, hostname and /etc/hosts, all joined
# by one bridge that has no address (the machine itself cannot reach them, nor they it).
#
#   slurm/multinode.sh [--nodes N] start      head (slurmctld, login node) + N compute nodes n1..nN
#   slurm/multinode.sh stop                   cancel jobs, stop the daemons, kill every process
#                                             left in the namespaces, remove namespaces and bridge
#   slurm/multinode.sh status                 daemons per host, sinfo; exit 0 only when healthy
#   slurm/multinode.sh env                    print: export SLURM_CONF=...
#   slurm/multinode.sh exec HOST -- CMD...    run CMD on HOST (head or nK), in its namespaces,
#                                             in the current folder, with SLURM_CONF set
# slurm/cluster.sh --nodes N ... is the same.
#
# Environment: T2MPI_MULTI_DIR (state dir, default /var/tmp/t2mpi-slurm-multi),
# T2MPI_MULTI_NODES (N, default 3), T2MPI_MULTI_NET (first three octets, default 10.77.0:
# head .10, nK .10+K), T2MPI_MULTI_IFNAME (each host's interface, default nic0: a name the machine
# itself lacks, so the machine's interfaces, which a host's /sys/class/net lists, never name it),
# T2MPI_SLURM_START_TIMEOUT / T2MPI_SLURM_STOP_TIMEOUT (60 / 30 s).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
readonly PROG=multinode.sh
readonly TEMPLATE=$HERE/slurm.conf.in
readonly STATE_DIR=${T2MPI_MULTI_DIR:-/var/tmp/t2mpi-slurm-multi}
readonly CONF=$STATE_DIR/etc/slurm.conf
readonly HOSTS_FILE=$STATE_DIR/etc/hosts
readonly NODES_FILE=$STATE_DIR/etc/nodes          # the compute nodes of the running cluster
readonly NET=${T2MPI_MULTI_NET:-10.77.0}
readonly IFNAME=${T2MPI_MULTI_IFNAME:-nic0}
[[ $IFNAME =~ ^[A-Za-z][A-Za-z0-9_.-]{0,14}$ ]] || { echo "$PROG: T2MPI_MULTI_IFNAME: '$IFNAME' is not an interface name" >&2; exit 2; }
readonly BRIDGE=t2mpibr0
readonly NS_PREFIX=t2mpi-                         # namespaces t2mpi-head, t2mpi-n1, ...
readonly VETH_PREFIX=t2mpiv-                      # host ends t2mpiv-head, t2mpiv-n1, ...
readonly CTLD_PORT=6817 SLURMD_PORT=6818          # per namespace: no clash with cluster.sh
readonly START_TIMEOUT=${T2MPI_SLURM_START_TIMEOUT:-60}
readonly STOP_TIMEOUT=${T2MPI_SLURM_STOP_TIMEOUT:-30}
readonly CTLD_LOG=$STATE_DIR/log/slurmctld.log
readonly MUNGE_KEY=/etc/munge/munge.key
readonly MUNGE_LOG=/var/log/munge/munged.log
readonly MUNGE_MARK=$STATE_DIR/run/munged.ours
NODES=${T2MPI_MULTI_NODES:-3}

export SLURM_CONF=$CONF

# shellcheck source=lib.sh
. "$HERE/lib.sh"

need_root() { [[ $(id -u) == 0 ]] || die "must run as root (it makes namespaces and starts daemons)"; }

need_binaries() {
    local name missing=()
    for name in slurmctld slurmd munged sbatch ip nsenter unshare; do
        command -v "$name" >/dev/null 2>&1 || missing+=("$name")
    done
    ((${#missing[@]} == 0)) || die "not installed: ${missing[*]}; run: slurm/cluster.sh install"
}

node_names() { local k; for ((k = 1; k <= NODES; k++)); do echo "n$k"; done; }
address_of() { if [[ $1 == head ]]; then echo "$NET.10"; else echo "$NET.$((10 + ${1#n}))"; fi; }

# The compute nodes the running cluster was started with (else those asked for now).
running_nodes() { if [[ -s $NODES_FILE ]]; then cat "$NODES_FILE"; else node_names; fi; }

# ---------------------------------------------------------------- hosts

# Pid of the daemon that holds HOST's namespaces (slurmctld for head, slurmd -N nK), or nothing.
daemon_pid() {
    local pid want=(slurmd "-N $1")
    [[ $1 == head ]] && want=(slurmctld "$CONF")
    for pid in $(our_pids "${want[0]}"); do
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qE -- "${want[1]}( |\$)" && { echo "$pid"; return 0; }
    done
    return 0
}

# Run "$@" on HOST: its network, hostname and /etc/hosts, this folder, SLURM_CONF set.
in_host() {
    local host=$1 pid
    shift
    pid=$(daemon_pid "$host")
    [[ -n $pid ]] || die "host $host has no running daemon; run: $0 start"
    nsenter --target "$pid" --net --uts --mount --wd="$PWD" -- "$@"
}

client() { in_host head "$@"; }

# ---------------------------------------------------------------- network

veth_of() { echo "$VETH_PREFIX$1"; }

make_network() {
    local host addr
    ip link add "$BRIDGE" type bridge
    ip link set "$BRIDGE" up                     # no address: the machine stays out of it
    for host in head $(node_names); do
        addr=$(address_of "$host")
        ip netns add "$NS_PREFIX$host"
        ip link add "$(veth_of "$host")" type veth peer name "$IFNAME" netns "$NS_PREFIX$host"
        ip link set "$(veth_of "$host")" master "$BRIDGE" up
        nsenter --net="/run/netns/$NS_PREFIX$host" ip addr add "$addr/24" dev "$IFNAME"
        nsenter --net="/run/netns/$NS_PREFIX$host" ip link set "$IFNAME" up
        nsenter --net="/run/netns/$NS_PREFIX$host" ip link set lo up
    done
}

our_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${NS_PREFIX}(head|n[0-9]+)\$" || true; }

# Every process in one of our network namespaces (all share the machine's pid namespace).
namespace_pids() {
    local ns
    for ns in $(our_namespaces); do ip netns pids "$ns" 2>/dev/null || true; done
    return 0
}

kill_namespace_processes() {
    local pids
    mapfile -t pids < <(namespace_pids)
    ((${#pids[@]} > 0)) || return 0
    log "ending processes left on the nodes (pid ${pids[*]})"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait_until 5 none_alive "${pids[@]}" && return 0
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait_until 5 none_alive "${pids[@]}" || die "processes still run on the nodes after SIGKILL (pid ${pids[*]})"
}

remove_network() {
    local ns
    for ns in $(our_namespaces); do ip netns del "$ns" 2>/dev/null || log "cannot remove namespace $ns"; done
    for ns in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep "^$VETH_PREFIX" || true); do
        ip link del "$ns" 2>/dev/null || true
    done
    if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE" || log "cannot remove bridge $BRIDGE"; fi
}

# ---------------------------------------------------------------- config

write_hosts() {
    local host tmp=$HOSTS_FILE.tmp.$$
    { echo "127.0.0.1 localhost"; echo "::1 localhost ip6-localhost ip6-loopback"
      for host in head $(node_names); do echo "$(address_of "$host") $host"; done; } >"$tmp"
    mv -f "$tmp" "$HOSTS_FILE"
}

render_conf() {
    local host lines=()
    for host in $(node_names); do lines+=("$(node_line "$host" "$(address_of "$host")")"); done
    render_slurm_conf head "$(address_of head)" "n[1-$NODES]" "$(printf '%s\n' "${lines[@]}")"
    node_names >"$NODES_FILE"
}

make_state_dirs() {
    install -d -m 0755 "$STATE_DIR" "$STATE_DIR/etc" "$STATE_DIR/log" "$STATE_DIR/run" "$STATE_DIR/spool"
    install -d -m 0700 "$STATE_DIR/ctld"
    local host
    install -d -m 1777 "$STATE_DIR/tmp"
    for host in $(node_names); do
        install -d -m 0700 "$STATE_DIR/spool/$host"
        install -d -m 1777 "$STATE_DIR/tmp/$host"
    done
}

# ---------------------------------------------------------------- health

node_states() { client sinfo -h -N -o '%N %T' 2>/dev/null || true; }

nodes_usable() {
    local states host
    states=$(node_states)
    for host in $(running_nodes); do
        grep -qE "^$host (idle|mixed|allocated|completing)\$" <<<"$states" || return 1
    done
}

daemons_up() {
    local host
    [[ -n $(daemon_pid head) ]] || return 1
    for host in $(running_nodes); do [[ -n $(daemon_pid "$host") ]] || return 1; done
}

healthy() {
    [[ $(running_nodes | tr '\n' ' ') == "$(node_names | tr '\n' ' ')" ]] && daemons_up && munge_works \
        && ctld_up && nodes_usable
}

# ---------------------------------------------------------------- start / stop

# Start daemon ARGS... on HOST: a fresh hostname and /etc/hosts, in HOST's network namespace
# (nsenter, not `ip netns exec`, which remounts /sys and hides the cgroup tree from slurmd).
start_on() {
    local host=$1 log_file=$2 out=$STATE_DIR/log/$3.out
    shift 3
    log "starting $* on $host"
    nsenter --net="/run/netns/$NS_PREFIX$host" unshare --uts --mount --propagation private \
        sh -c 'mount --bind "$1" /etc/hosts && hostname "$2" && shift 2 && exec "$@"' sh "$HOSTS_FILE" "$host" "$@" \
        </dev/null >>"$out" 2>&1 || die "$1 on $host failed to start: $(tail -n 1 "$out"); read $log_file and $out"
}

resume_drained() {
    local host
    for host in $(client sinfo -h -N -t drain -o '%N' 2>/dev/null || true); do
        log "node $host is drained; resuming it"
        client scontrol update NodeName="$host" State=RESUME || true
    done
}

nodes_ready() { resume_drained; nodes_usable; }

smoke_job() { client timeout 30 srun -N "$NODES" -n "$NODES" -t 1 --quiet true; }

teardown() {
    [[ -r $CONF ]] && [[ -n $(daemon_pid head) ]] && cancel_all_jobs
    terminate slurmd our_pids
    terminate slurmctld our_pids
    kill_orphan_steps
    kill_namespace_processes
    remove_network
}

cmd_start() {
    need_root
    need_binaries
    ((NODES >= 1 && NODES <= 200)) || die "--nodes must be 1..200, got $NODES"
    if healthy; then
        log "already running ($CONF, nodes $(running_nodes | tr '\n' ' '))"
        cmd_env
        return 0
    fi
    local t0=$SECONDS host
    teardown                    # a half-running cluster is rebuilt from scratch
    make_state_dirs
    start_munge
    make_network
    write_hosts
    render_conf
    start_on head "$CTLD_LOG" slurmctld slurmctld -f "$CONF" -c
    wait_until "$START_TIMEOUT" ctld_up \
        || die "slurmctld on head not answering after ${START_TIMEOUT}s: $(last_error "$CTLD_LOG"); read $CTLD_LOG"
    for host in $(node_names); do
        start_on "$host" "$STATE_DIR/log/slurmd-$host.log" "slurmd-$host" slurmd -f "$CONF" -N "$host"
    done
    wait_until "$START_TIMEOUT" nodes_ready \
        || die "nodes not all idle after ${START_TIMEOUT}s ($(node_states | tr '\n' ' ')); read $STATE_DIR/log/slurmd-n*.log and $CTLD_LOG"
    smoke_job || die "test job 'srun -N $NODES -n $NODES true' failed; read $STATE_DIR/log/slurmd-n*.log and $CTLD_LOG"
    log "cluster up in $((SECONDS - t0))s: head $(address_of head), nodes $(node_names | tr '\n' ' ')logs in $STATE_DIR/log"
    cmd_env
}

cmd_stop() {
    need_root
    teardown
    stop_munge
    rm -f "$NODES_FILE"
    log "stopped"
}

cmd_status() {
    local host pid rc=0
    for host in head $(running_nodes); do
        pid=$(daemon_pid "$host")
        if [[ -n $pid ]]; then echo "$host ($(address_of "$host")): $([[ $host == head ]] && echo slurmctld || echo slurmd) pid $pid"
        else echo "$host: not running"; rc=1; fi
    done
    munge_works || { echo "munged: not running"; rc=1; }
    echo "config: $CONF"
    if [[ -n $(daemon_pid head) ]] && ctld_up; then client sinfo -N -l; nodes_usable || rc=1; else rc=1; fi
    return "$rc"
}

cmd_env() { echo "export SLURM_CONF=$CONF"; }

cmd_exec() {
    local host=${1:-}
    shift || true
    [[ ${1:-} == -- ]] && shift
    [[ -n $host && $# -gt 0 ]] || die "usage: $0 exec HOST -- CMD..."
    local pid
    pid=$(daemon_pid "$host")
    [[ -n $pid ]] || die "host $host has no running daemon (hosts: head $(running_nodes | tr '\n' ' ')); run: $0 start"
    exec nsenter --target "$pid" --net --uts --mount --wd="$PWD" -- "$@"
}

main() {
    if [[ ${1:-} == --nodes ]]; then
        [[ ${2:-} =~ ^[0-9]+$ ]] || die "--nodes needs a number"
        NODES=$2
        shift 2
    fi
    readonly NODES
    local cmd=${1:-}
    shift || true
    case $cmd in
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        env) cmd_env ;;
        exec) cmd_exec "$@" ;;
        *) echo "usage: $0 [--nodes N] start|stop|status|env|exec HOST -- CMD..." >&2; exit 2 ;;
    esac
}

main "$@"
