#!/bin/bash
#PBS -N hello
#PBS -l select=1:ncpus=5:mpiprocs=5:mem=2304mb
#PBS -j oe
#PBS -o /jobs/hello-1/batch.out

# t2mpi 0.1.0: job hello-1, 4 workers x 1 cpus + 1 master (mpich, mpiexec)
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
exec /opt/venv/bin/python -P -m t2mpi.restart --job-dir /jobs/hello-1 -- /opt/mpi/bin/mpiexec -n 5 -f "$PBS_NODEFILE" -genv BLIS_NUM_THREADS 1 -genv MKL_NUM_THREADS 1 -genv NUMEXPR_NUM_THREADS 1 -genv OMP_NUM_THREADS 1 -genv OPENBLAS_NUM_THREADS 1 "${T2MPI_NETWORK[@]}" /opt/venv/bin/python -P -m t2mpi.launch --job-dir /jobs/hello-1
