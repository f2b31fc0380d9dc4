#include "model/buffer.hpp"

#include <algorithm>
#include <cstdint>

#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace eomlab {

void copy_streaming(const double* from, Index n, double* to) {
  Index i = 0;
#if defined(__AVX__)
  for (; i < n && reinterpret_cast<std::uintptr_t>(to + i) % 32 != 0; ++i) to[i] = from[i];
  for (; i + 4 <= n; i += 4) _mm256_stream_pd(to + i, _mm256_loadu_pd(from + i));
#endif
  std::copy(from + i, from + n, to + i);
}

}  // namespace eomlab
