// The BLAS behind Eigen's products (EOMLAB_BLAS). eomlab parallelizes with MPI ranks, one per core; a
// BLAS that starts its own threads in every rank oversubscribes the cores, so it is pinned to one.
// Its identity goes into every run file: the kernel it picks for the CPU decides the last bits.
#pragma once
#include <string>

namespace eomlab {

// Sets the BLAS thread count to 1 (OpenBLAS, BLIS or MKL, whichever is linked; nothing otherwise).
// Idempotent; every Model calls it when built.
void use_one_blas_thread();

// E.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Cooperlake MAX_THREADS=64 (kernels: Cooperlake)", or
// "Eigen (no external BLAS)".
std::string blas_description();

}  // namespace eomlab
