# Shell helpers shared by cluster.sh and selftest.sh (sourced, not run).

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
