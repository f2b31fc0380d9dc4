#include "model/gemm.hpp"

#include <limits>

#include "core/error.hpp"

namespace eomlab {
namespace {
std::uint64_t flops = 0;  // one rank, one thread: no atomics needed
}

std::uint64_t gemm_flops_so_far() { return flops; }

void gemm(double alpha, const Eigen::Ref<const Matrix>& a, Op op_a, const Eigen::Ref<const Matrix>& b, Op op_b,
          double beta, Eigen::Ref<Matrix> c) {
  const Index m = op_a == Op::none ? a.rows() : a.cols();
  const Index k = op_a == Op::none ? a.cols() : a.rows();
  const Index n = op_b == Op::none ? b.cols() : b.rows();
  if ((op_b == Op::none ? b.rows() : b.cols()) != k || c.rows() != m || c.cols() != n)
    throw Error("gemm: shapes do not match");
  if (m == 0 || n == 0) return;
  flops += 2 * static_cast<std::uint64_t>(m) * static_cast<std::uint64_t>(n) * static_cast<std::uint64_t>(k);
#ifdef EIGEN_USE_BLAS
  constexpr Index int_max = std::numeric_limits<int>::max();
  if (m > int_max || n > int_max || k > int_max || a.outerStride() > int_max || b.outerStride() > int_max ||
      c.outerStride() > int_max)
    throw Error("gemm: matrix too large for a 32-bit BLAS");
  const char ta = op_a == Op::none ? 'N' : 'T', tb = op_b == Op::none ? 'N' : 'T';
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  const int lda = static_cast<int>(std::max<Index>(1, a.outerStride()));
  const int ldb = static_cast<int>(std::max<Index>(1, b.outerStride()));
  const int ldc = static_cast<int>(std::max<Index>(1, c.outerStride()));
  dgemm_(&ta, &tb, &mi, &ni, &ki, &alpha, a.data(), &lda, b.data(), &ldb, &beta, c.data(), &ldc);
#else
  if (beta == 0.0) c.setZero(); else if (beta != 1.0) c *= beta;
  if (op_a == Op::none && op_b == Op::none) c.noalias() += alpha * a * b;
  else if (op_a == Op::transpose && op_b == Op::none) c.noalias() += alpha * a.transpose() * b;
  else if (op_a == Op::none) c.noalias() += alpha * a * b.transpose();
  else c.noalias() += alpha * a.transpose() * b.transpose();
#endif
}

}  // namespace eomlab
