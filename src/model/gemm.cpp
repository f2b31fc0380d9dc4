#include "model/gemm.hpp"

#include <array>
#include <atomic>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "model/blas.hpp"

namespace eomlab {
namespace {
// Models may run in several threads (the Python module): counted atomically, in no particular order.
std::atomic<std::uint64_t> flops{0};
}

std::uint64_t gemm_flops_so_far() { return flops.load(std::memory_order_relaxed); }

void gemm(double alpha, const Eigen::Ref<const Matrix>& a, Op op_a, const Eigen::Ref<const Matrix>& b, Op op_b,
          double beta, Eigen::Ref<Matrix> c) {
  const Index m = op_a == Op::none ? a.rows() : a.cols();
  const Index k = op_a == Op::none ? a.cols() : a.rows();
  const Index n = op_b == Op::none ? b.cols() : b.rows();
  if ((op_b == Op::none ? b.rows() : b.cols()) != k || c.rows() != m || c.cols() != n)
    throw Error("gemm: shapes do not match");
  if (m == 0 || n == 0) return;
  flops.fetch_add(2 * static_cast<std::uint64_t>(m) * static_cast<std::uint64_t>(n) * static_cast<std::uint64_t>(k),
                  std::memory_order_relaxed);
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

bool gemm_column_block_keeps_bits(Index m, Index k, Index n, int blocks) {
  // Models in several threads (the Python module's objectives evaluate without the GIL) share the answers.
  static std::mutex guard;
  static std::map<std::array<Index, 4>, bool> known;
  const std::lock_guard<std::mutex> one_at_a_time(guard);
  const auto [it, asked] = known.try_emplace({m, k, n, blocks}, false);
  if (!asked) return it->second;
  if (m == 0 || k == 0 || n == 0 || blocks < 1) return it->second = true;
  // Entries of mixed signs and magnitudes, the same at every call: sums whose rounding shows their order.
  Rng rng(0, rng_stream::probe);
  const auto fill = [&](Matrix& x) {
    for (Index i = 0; i < x.size(); ++i) x.data()[i] = rng.normal();
  };
  use_one_blas_thread();  // asked as every Model runs it: a threaded BLAS may split the wider product
  Matrix a(m, k), b(k, blocks * n), whole(m, blocks * n), alone(m, n);
  fill(a);
  fill(b);
  gemm(1.0, a, Op::none, b, Op::none, 0.0, whole);
  gemm(1.0, a, Op::none, b.leftCols(n), Op::none, 0.0, alone);
  // A question to the library, not the caller's work: its two products are taken off the count again.
  const auto asked_flops = 2 * static_cast<std::uint64_t>(m) * static_cast<std::uint64_t>(k) * static_cast<std::uint64_t>((blocks + 1) * n);
  flops.fetch_sub(asked_flops, std::memory_order_relaxed);
  return it->second = std::memcmp(whole.data(), alone.data(), sizeof(double) * static_cast<std::size_t>(m * n)) == 0;
}

}  // namespace eomlab
