#include "model/blas.hpp"

// Weak declarations: each is null unless that BLAS is linked, so no vendor is needed at compile time.
extern "C" {
void openblas_set_num_threads(int) __attribute__((weak));
char* openblas_get_config() __attribute__((weak));
char* openblas_get_corename() __attribute__((weak));
void bli_thread_set_num_threads(long) __attribute__((weak));
const char* bli_info_get_version_str() __attribute__((weak));
void MKL_Set_Num_Threads(int) __attribute__((weak));
void MKL_Get_Version_String(char*, int) __attribute__((weak));
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

std::string blas_description() {
  if (openblas_get_config) {
    std::string s = openblas_get_config();
    if (openblas_get_corename) s += std::string(" (kernels: ") + openblas_get_corename() + ")";
    return s;
  }
  if (bli_info_get_version_str) return std::string("BLIS ") + bli_info_get_version_str();
  if (MKL_Get_Version_String) {
    char text[256] = {};
    MKL_Get_Version_String(text, sizeof text);
    return text;
  }
#ifdef EIGEN_USE_BLAS
  return "external BLAS (vendor not identified)";
#else
  return "Eigen (no external BLAS)";
#endif
}

}  // namespace eomlab
