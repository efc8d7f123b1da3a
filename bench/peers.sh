#!/usr/bin/env bash
# Make the side venvs of the benchmarks' peers, beside .venv-mpich: .venv-pyspark and .venv-dask
# (bench/dataflow.py; PySpark also bench/streaming.py), .venv-bytewax (bench/streaming.py).
# They are never dependencies of t2mpi; a benchmark runs a peer's sides only where its venv exists.
# Usage: bench/peers.sh [pyspark] [dask] [bytewax]   (default: all; an existing venv is brought up to date)
set -euo pipefail
cd "$(dirname "$0")/.."

python312() {
  local py
  for py in python3 python3.12; do
    if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      echo "$py"; return
    fi
  done
  echo "peers.sh: the side venvs need Python >= 3.12" >&2
  exit 2
}

make_venv() {  # make_venv NAME PACKAGE...
  local venv=.venv-$1; shift
  [ -x "$venv/bin/python" ] || "$(python312)" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@"
  echo "peers.sh: $venv: $("$venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
    | awk 'tolower($1) ~ /^(pyspark|dask|distributed|bytewax|pandas|pyarrow|numpy)$/ {printf "%s %s, ", $1, $2}')"
}

# numpy reads the .npy inputs and makes the answers' summaries; pandas and pyarrow carry Spark's
# Arrow transfers (mapInPandas) and Dask's frames.
for peer in "${@:-pyspark dask bytewax}"; do
  for p in $peer; do
    case $p in
      pyspark)
        if ! java -version >/dev/null 2>&1; then
          echo "peers.sh: PySpark needs java on PATH (java -version failed)" >&2; exit 2
        fi
        make_venv pyspark pyspark numpy "pandas<3" pyarrow ;;  # pyspark 4.x warns that pandas 3 is not yet supported
      dask)
        make_venv dask 'dask[dataframe,distributed]' numpy pandas pyarrow ;;
      bytewax)
        make_venv bytewax bytewax==0.21.1 numpy ;;  # the version issue #15's figures are for
      *) echo "peers.sh: unknown peer '$p' (pyspark, dask, bytewax)" >&2; exit 2 ;;
    esac
  done
done
