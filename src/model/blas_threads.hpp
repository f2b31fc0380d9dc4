// eomlab parallelizes with MPI ranks, one per core; a BLAS that starts its own threads in every rank
// oversubscribes the cores. This pins the BLAS behind Eigen's products (EOMLAB_BLAS) to one thread.
#pragma once

namespace eomlab {

// Sets the BLAS thread count to 1 (OpenBLAS, BLIS or MKL, whichever is linked; nothing otherwise).
// Idempotent; Mlp's constructor calls it.
void use_one_blas_thread();

}  // namespace eomlab
