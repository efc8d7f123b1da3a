#!/bin/bash
#SBATCH --job-name=hello
#SBATCH --ntasks=4
#SBATCH --cpus-per-task=2
#SBATCH --output=/jobs/hello-1/batch.out

# t2mpi 0.1.0: job hello-1, 4 workers x 2 cpus + 1 master (openmpi, mpiexec)
set -e
cd /jobs/hello-1
export BLIS_NUM_THREADS=2
export MKL_NUM_THREADS=2
export NUMEXPR_NUM_THREADS=2
export OMP_NUM_THREADS=2
export OPENBLAS_NUM_THREADS=2
# The network transport is chosen when the job starts, on its first node
t2mpi_network=$(/opt/venv/bin/python -P -m t2mpi.network --job-dir /jobs/hello-1)
eval "$t2mpi_network"
exec /opt/venv/bin/python -P -m t2mpi.restart --job-dir /jobs/hello-1 -- /opt/ompi/bin/mpirun -n 5 --bind-to none --map-by :OVERSUBSCRIBE -x BLIS_NUM_THREADS=2 -x MKL_NUM_THREADS=2 -x NUMEXPR_NUM_THREADS=2 -x OMP_NUM_THREADS=2 -x OPENBLAS_NUM_THREADS=2 "${T2MPI_NETWORK[@]}" /opt/venv/bin/python -P -m t2mpi.launch --job-dir /jobs/hello-1
