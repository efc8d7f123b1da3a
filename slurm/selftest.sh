#!/usr/bin/env bash
# Checks that the cluster from slurm/cluster.sh really runs jobs.
#
#   slurm/selftest.sh [VENV...]
#
# Always: a batch job prints the hostname; scancel ends a running sleep job
# within a few seconds and leaves no process. For each VENV (a Python venv with
# mpi4py and an MPICH or Open MPI wheel): a 3-rank Allreduce in a batch job,
# once through the venv's own launcher and once through srun (pmi2 for MPICH,
# pmix for Open MPI). Exits non-zero at the first failure; every wait is bounded.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
readonly JOB_TIMEOUT=${T2MPI_SELFTEST_JOB_TIMEOUT:-120}
readonly CANCEL_TIMEOUT=10
eval "$("$HERE/cluster.sh" env)"

WORK=$(mktemp -d /tmp/t2mpi-selftest.XXXXXX)
JOBS=()
FAILED=0

cleanup() {
    ((${#JOBS[@]} == 0)) || scancel "${JOBS[@]}" 2>/dev/null || true
    if ((FAILED)); then echo "selftest: files kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

fail() { FAILED=1; echo "selftest: FAIL: $*" >&2; exit 1; }
pass() { echo "selftest: ok: $*"; }

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

job_state() { squeue -h -j "$1" -t all -o '%T' 2>/dev/null || true; }
job_ended() { [[ -n $(job_state "$1") && ! $(job_state "$1") =~ ^(PENDING|CONFIGURING|RUNNING|COMPLETING)$ ]]; }

# run_batch NAME SBATCH_ARGS... -- SCRIPT_BODY: submit, poll until it ends (bounded),
# require state COMPLETED; output in $WORK/NAME.out. Polls squeue rather than
# sbatch --wait, whose own poll interval grows to several seconds.
run_batch() {
    local name=$1 args=() job state
    shift
    while [[ $1 != -- ]]; do args+=("$1"); shift; done
    shift
    printf '#!/bin/bash\nset -euo pipefail\n%s\n' "$1" >"$WORK/$name.sh"
    job=$(sbatch --parsable -J "selftest-$name" -t 5 -o "$WORK/$name.out" "${args[@]}" "$WORK/$name.sh")
    job=${job%%;*}
    JOBS+=("$job")
    wait_until "$JOB_TIMEOUT" job_ended "$job" || fail "$name: job $job still $(job_state "$job") after ${JOB_TIMEOUT}s"
    state=$(job_state "$job")
    [[ $state == COMPLETED ]] \
        || fail "$name: job $job $state ($(scontrol show job "$job" | grep -o 'ExitCode=[^ ]*')); output: $(tr '\n' '|' <"$WORK/$name.out" 2>/dev/null)"
}

check_cluster() {
    "$HERE/cluster.sh" status >/dev/null 2>&1 || fail "cluster not healthy; run: slurm/cluster.sh start"
    pass "cluster healthy ($SLURM_CONF)"
}

check_hostname_job() {
    local out rc=0 got
    printf '#!/bin/bash\nhostname\n' >"$WORK/hostname.sh"
    out=$(timeout "$JOB_TIMEOUT" sbatch --parsable --wait -J selftest-hostname -t 5 \
        -o "$WORK/hostname.out" "$WORK/hostname.sh") || rc=$?
    [[ -z $out ]] || JOBS+=("${out%%;*}")
    ((rc == 0)) || fail "sbatch --wait hostname job '${out%%;*}' exit $rc (124: timeout ${JOB_TIMEOUT}s)"
    got=$(<"$WORK/hostname.out")
    [[ $got == "$(hostname)" ]] || fail "hostname job printed '$got', expected '$(hostname)'"
    pass "sbatch --wait hostname job printed '$got'"
}

# Succeeds once the job's process runs, or once the job has ended (so the wait stops early).
job_started() { pgrep -f "$2" >/dev/null || [[ ! $(job_state "$1") =~ ^(PENDING|CONFIGURING|RUNNING)$ ]]; }
job_gone() { [[ ! $(job_state "$1") =~ ^(RUNNING|COMPLETING|PENDING)$ ]] && ! pgrep -f "$2" >/dev/null; }

check_scancel() {
    local tag="t2mpi-selftest-sleep-$$" job t0
    printf '#!/bin/bash\nexec -a %s sleep 600\n' "$tag" >"$WORK/sleep.sh"
    job=$(sbatch --parsable -J selftest-scancel -t 5 -o "$WORK/sleep.out" "$WORK/sleep.sh")
    job=${job%%;*}
    JOBS+=("$job")
    if ! wait_until 30 job_started "$job" "$tag" || ! pgrep -f "$tag" >/dev/null; then
        fail "sleep job $job not running (state $(job_state "$job")); output: $(tr '\n' '|' <"$WORK/sleep.out" 2>/dev/null)"
    fi
    t0=$(date +%s%N)
    scancel "$job"
    wait_until "$CANCEL_TIMEOUT" job_gone "$job" "$tag" \
        || fail "scancel: job $job state '$(job_state "$job")', processes: $(pgrep -af "$tag" | tr '\n' '|')"
    pass "scancel ended job $job in $((($(date +%s%N) - t0) / 1000000)) ms, no process left"
}

write_allreduce() {
    cat >"$WORK/allreduce.py" <<'EOF'
import socket
from mpi4py import MPI

comm = MPI.COMM_WORLD
total = comm.allreduce(comm.rank + 1, op=MPI.SUM)
assert total == comm.size * (comm.size + 1) // 2, total
print(f"rank {comm.rank}/{comm.size} on {socket.gethostname()} sum={total}", flush=True)
EOF
}

# The output must hold one report from each rank of a 3-rank world (launchers may
# interleave lines, so count matches, not lines).
check_ranks() {
    local name=$1 n
    n=$(grep -o 'rank [0-2]/3 on [^ ]* sum=6' "$WORK/$name.out" | sort -u | wc -l)
    ((n == 3)) || fail "$name: expected reports from 3 ranks, got $n: $(tr '\n' '|' <"$WORK/$name.out")"
    pass "$name: 3 ranks, Allreduce sum=6"
}

# 3 ranks on a node that may have fewer CPUs: -O (overcommit) lets the job hold 3 tasks.
check_mpi() {
    local venv=$1 label py
    [[ -x $venv/bin/python ]] || fail "$venv/bin/python not found"
    venv=$(cd "$venv" && pwd)
    py="$venv/bin/python $WORK/allreduce.py"
    label=$(basename "$venv")
    if [[ -x $venv/bin/mpichversion ]]; then
        run_batch "$label-mpiexec" -n 3 -O -- "$venv/bin/mpiexec -n 3 $py"
        check_ranks "$label-mpiexec"
        run_batch "$label-srun-pmi2" -n 3 -O -- "srun --mpi=pmi2 -n 3 $py"
        check_ranks "$label-srun-pmi2"
    elif "$venv/bin/mpirun" --version 2>/dev/null | grep -q 'Open MPI'; then
        run_batch "$label-mpirun" -n 3 -O -- "export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
$venv/bin/mpirun -n 3 --oversubscribe --mca btl ^ofi $py"
        check_ranks "$label-mpirun"
        run_batch "$label-srun-pmix" -n 3 -O -- "srun --mpi=pmix -n 3 $py"
        check_ranks "$label-srun-pmix"
    else
        fail "$venv: neither MPICH (bin/mpichversion) nor Open MPI (bin/mpirun --version)"
    fi
}

main() {
    check_cluster
    check_hostname_job
    check_scancel
    if (($# > 0)); then write_allreduce; fi
    local venv
    for venv in "$@"; do check_mpi "$venv"; done
    echo "selftest: all checks passed"
}

main "$@"
