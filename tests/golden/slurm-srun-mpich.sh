#!/bin/bash
#SBATCH --job-name=hello
#SBATCH --ntasks=5
#SBATCH --cpus-per-task=1
#SBATCH --mem-per-cpu=512M
#SBATCH --output=/jobs/hello-1/batch.out

# t2mpi 0.1.0: job hello-1, 4 workers x 1 cpus + 1 master (mpich, srun)
set -e
cd /jobs/hello-1
export BLIS_NUM_THREADS=1
export MKL_NUM_THREADS=1
export NUMEXPR_NUM_THREADS=1
export OMP_NUM_THREADS=1
export OPENBLAS_NUM_THREADS=1
export SRUN_CPUS_PER_TASK=1
# The network transport is chosen when the job starts, on its first node
t2mpi_network=$(/opt/venv/bin/python -P -m t2mpi.network --job-dir /jobs/hello-1)
eval "$t2mpi_network"
exec /opt/venv/bin/python -P -m t2mpi.restart --job-dir /jobs/hello-1 -- srun --mpi=pmi2 --ntasks=5 --cpus-per-task=1 --cpu-bind=none /opt/venv/bin/python -P -m t2mpi.launch --job-dir /jobs/hello-1
