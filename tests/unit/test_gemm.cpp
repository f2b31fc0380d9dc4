// gemm() (model/gemm.hpp) against Eigen's own product: every pair of transposes, β = 0 (C's old
// contents, even NaN, ignored) and β ≠ 0, on views with an outer stride (blocks, maps).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>

#include "model/gemm.hpp"
#include "support/model.hpp"

using namespace eomlab;

TEST(Gemm, MatchesEigenForEveryTransposeAndBeta) {
  const Matrix a = Matrix::Random(7, 5), b = Matrix::Random(5, 4);
  const Matrix at = a.transpose(), bt = b.transpose();
  const Matrix expected = 0.5 * a * b;
  for (Op op_a : {Op::none, Op::transpose})
    for (Op op_b : {Op::none, Op::transpose}) {
      const Matrix& x = op_a == Op::none ? a : at;
      const Matrix& y = op_b == Op::none ? b : bt;
      Matrix c = Matrix::Constant(7, 4, std::nan(""));
      gemm(0.5, x, op_a, y, op_b, 0.0, c);
      EXPECT_LT((c - expected).norm(), 1e-14);
      Matrix d = Matrix::Ones(7, 4);
      gemm(0.5, x, op_a, y, op_b, 2.0, d);
      EXPECT_LT((d - (expected + Matrix::Constant(7, 4, 2.0))).norm(), 1e-14);
    }
}

TEST(Gemm, WritesIntoBlocksAndReadsStridedViews) {
  const Matrix big = Matrix::Random(10, 9);
  Matrix c = Matrix::Zero(12, 6);
  gemm(1.0, big.block(1, 2, 4, 3), Op::none, big.block(5, 0, 3, 2), Op::none, 0.0, c.block(3, 1, 4, 2));
  Matrix expected = Matrix::Zero(12, 6);
  expected.block(3, 1, 4, 2) = big.block(1, 2, 4, 3) * big.block(5, 0, 3, 2);
  EXPECT_LT((c - expected).norm(), 1e-14);
  EXPECT_THROW(gemm(1.0, big, Op::none, big, Op::none, 0.0, c), std::exception);
}

extern "C" int openblas_get_num_threads() __attribute__((weak));

// eomlab runs one rank per core: the BLAS it links must not start threads of its own.
TEST(Gemm, BlasRunsOneThreadOnceAModelExists) {
  if (!openblas_get_num_threads) GTEST_SKIP() << "not linked with OpenBLAS";
  Model mlp = test::mlp_model({3, 4, 2}, Activation::tanh, LossKind::mse);
  EXPECT_EQ(openblas_get_num_threads(), 1);
}

// The library's answer on whether a column block of a wider product keeps the bits of the block's own
// product is what other products of the same shapes show: the conv layer's fans rely on it to keep a
// layer's value the same in every pass. Both answers occur here (OpenBLAS's Zen kernel treats a last odd
// column apart).
TEST(Gemm, ColumnBlockBitsAreAskedOfTheLibraryTruthfully) {
  int kept = 0, lost = 0;
  for (const Index m : {Index(13), Index(196)})
    for (const Index k : {Index(9), Index(300)})
      for (const Index n : {Index(1), Index(4), Index(5), Index(32), Index(33)})
        for (const int blocks : {2, 3}) {
          const Matrix a = Matrix::Random(m, k), b = Matrix::Random(k, blocks * n);
          Matrix whole(m, blocks * n), alone(m, n);
          gemm(1.0, a, Op::none, b, Op::none, 0.0, whole);
          gemm(1.0, a, Op::none, b.leftCols(n), Op::none, 0.0, alone);
          const bool same = whole.leftCols(n) == alone;
          EXPECT_EQ(gemm_column_block_keeps_bits(m, k, n, blocks), same) << m << " x " << k << " times " << blocks << " x " << n;
          EXPECT_EQ(gemm_column_block_keeps_bits(m, k, n, blocks), same) << "asked again";
          ++(same ? kept : lost);
        }
  RecordProperty("kept", kept);
  RecordProperty("lost", lost);
}

// The benchmarks' flop count: 2·m·n·k per product, and nothing for the column-block probe's own
// products (asked on a shape no other test asks), whether asked first or again.
TEST(Gemm, FlopsCountTheCallersProductsOnly) {
  const Matrix a = Matrix::Random(6, 5), b = Matrix::Random(5, 3);
  Matrix c(6, 3);
  const std::uint64_t before = gemm_flops_so_far();
  gemm(1.0, a, Op::none, b, Op::none, 0.0, c);
  EXPECT_EQ(gemm_flops_so_far() - before, 2u * 6 * 3 * 5);
  const std::uint64_t asked = gemm_flops_so_far();
  gemm_column_block_keeps_bits(17, 11, 7, 3);
  gemm_column_block_keeps_bits(17, 11, 7, 3);
  EXPECT_EQ(gemm_flops_so_far(), asked);
}
