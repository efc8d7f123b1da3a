#!/bin/bash
#PBS -N hello
#PBS -l select=2:ncpus=17:mpiprocs=5:mem=2176mb
#PBS -l walltime=48:00:00
#PBS -q workq
#PBS -A proj1
#PBS -j oe
#PBS -o /jobs/hello-1/batch.out
#PBS -l place=scatter

# t2mpi 0.1.0: job hello-1, 8 workers x 4 cpus + 1 master (openmpi, mpiexec)
set -e
cd /jobs/hello-1
export BLIS_NUM_THREADS=1
export MKL_NUM_THREADS=1
export NUMEXPR_NUM_THREADS=1
export OMP_NUM_THREADS=1
export OPENBLAS_NUM_THREADS=1
# The network transport is chosen when the job starts, on its first node
t2mpi_network=$(/opt/venv/bin/python -P -m t2mpi.network --job-dir /jobs/hello-1)
eval "$t2mpi_network"
exec /opt/venv/bin/python -P -m t2mpi.restart --job-dir /jobs/hello-1 -- /opt/ompi/bin/mpirun -n 9 --hostfile "$PBS_NODEFILE" --bind-to none --map-by :OVERSUBSCRIBE -x BLIS_NUM_THREADS=1 -x MKL_NUM_THREADS=1 -x NUMEXPR_NUM_THREADS=1 -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1 "${T2MPI_NETWORK[@]}" /opt/venv/bin/python -P -m t2mpi.launch --job-dir /jobs/hello-1
