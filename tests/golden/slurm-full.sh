#!/bin/bash
#SBATCH --job-name=hello
#SBATCH --ntasks=4
#SBATCH --cpus-per-task=1
#SBATCH --mem-per-cpu=512M
#SBATCH --nodes=2
#SBATCH --time=1-02:03:04
#SBATCH --partition=debug
#SBATCH --account=proj1
#SBATCH --qos=high
#SBATCH --output=/jobs/hello-1/batch.out
#SBATCH --exclusive
#SBATCH --constraint=ib

# t2mpi 0.1.0: job hello-1, 3 workers x 1 cpus + 1 master (mpich, mpiexec)
set -e
cd /jobs/hello-1
module load python/3.12
source /opt/venv/bin/activate
export BLIS_NUM_THREADS=1
export MKL_NUM_THREADS=1
export NUMEXPR_NUM_THREADS=1
export OMP_NUM_THREADS=1
export OPENBLAS_NUM_THREADS=1
export UCX_TLS=rc
# The network transport is chosen when the job starts, on its first node
t2mpi_network=$(/opt/venv/bin/python -P -m t2mpi.network --job-dir /jobs/hello-1)
eval "$t2mpi_network"
exec /opt/venv/bin/python -P -m t2mpi.restart --job-dir /jobs/hello-1 -- /opt/mpi/bin/mpiexec -n 4 -genv BLIS_NUM_THREADS 1 -genv MKL_NUM_THREADS 1 -genv NUMEXPR_NUM_THREADS 1 -genv OMP_NUM_THREADS 1 -genv OPENBLAS_NUM_THREADS 1 -genv UCX_TLS rc "${T2MPI_NETWORK[@]}" /opt/venv/bin/python -P -m t2mpi.launch --job-dir /jobs/hello-1
