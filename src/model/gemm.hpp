// C = α·op(A)·op(B) + β·C on column-major matrices or views of them (maps of θ, blocks): the one dense
// product of the derivative code. Through the BLAS when eomlab is built with one (EOMLAB_BLAS), else
// Eigen's product; either way C is written in place, with no zeroing pass and no temporary.
#pragma once
#include <cstdint>

#include "core/types.hpp"

namespace eomlab {

enum class Op { none, transpose };

void gemm(double alpha, const Eigen::Ref<const Matrix>& a, Op op_a, const Eigen::Ref<const Matrix>& b, Op op_b,
          double beta, Eigen::Ref<Matrix> c);

// Whether gemm(1, A, B, 0, C) with A m x k and B = [B_0 | .. | B_{blocks-1}] (k x blocks·n) writes
// C's first n columns with the bits of gemm(1, A, B_0, 0, ·): true in exact arithmetic, and for the
// BLAS's kernels where they treat all columns alike (OpenBLAS's Zen kernel does for even n, not odd n).
// Asked of the library once per shape, on products of that shape, with the BLAS pinned to one thread
// (use_one_blas_thread, as every Model runs it); the answer is remembered, for every thread.
bool gemm_column_block_keeps_bits(Index m, Index k, Index n, int blocks);

// Floating-point operations (2·m·n·k per product) done by gemm() in this process so far: the
// benchmarks divide differences of it by time to report achieved GFLOP/s.
std::uint64_t gemm_flops_so_far();

}  // namespace eomlab
