#include "model/blas_threads.hpp"

// Weak declarations: each is null unless that BLAS is linked, so no vendor is needed at compile time.
extern "C" {
void openblas_set_num_threads(int) __attribute__((weak));
void bli_thread_set_num_threads(long) __attribute__((weak));
void MKL_Set_Num_Threads(int) __attribute__((weak));
}

namespace eomlab {

void use_one_blas_thread() {
  static const bool done = [] {
    if (openblas_set_num_threads) openblas_set_num_threads(1);
    if (bli_thread_set_num_threads) bli_thread_set_num_threads(1);
    if (MKL_Set_Num_Threads) MKL_Set_Num_Threads(1);
    return true;
  }();
  (void)done;
}

}  // namespace eomlab
