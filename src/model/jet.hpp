// Matrix-valued jets: the arithmetic of forward-over-reverse differentiation at matrix level.
//
// A Jet in m <= 3 directions ε_1..ε_m (with ε_i² = 0) holds one dense matrix per subset S of the
// directions (bitmask S in [0, 2^m)): the mixed derivative ∂^|S| x / ∏_{i∈S} ∂ε_i at ε = 0. Component 0
// is the value. Products of jets are convolutions over subsets, so a product of two matrix jets is a
// handful of GEMMs; components known to be zero are flagged and cost nothing.
// Invariant: every non-zero component of a jet has the same shape.
#pragma once
#include <array>

#include "core/types.hpp"
#include "model/buffer.hpp"
#include "model/gemm.hpp"

namespace eomlab {

inline constexpr int max_jet_directions = 3;

struct Jet {
  int m = 0;
  std::array<Buffer, 1 << max_jet_directions> c;
  std::array<bool, 1 << max_jet_directions> nz{};

  int size() const { return 1 << m; }
  int top() const { return size() - 1; }
  // Sets the number of directions and marks every component zero (storage is kept).
  void reset(int directions);
  // A constant (no derivative parts).
  void set_constant(int directions, const Eigen::Ref<const Matrix>& value);
  Buffer& set(int s, Index rows, Index cols);  // marks s non-zero, resizes, returns it
  Index rows() const { return c[0].rows(); }
  Index cols() const { return c[0].cols(); }
};

// out = op(a) · op(b). Only the components whose bit is set in `wanted` are computed (the others are
// marked zero): e.g. just the top one for a jet whose lower components nobody reads.
inline constexpr unsigned all_components = ~0u;
void jet_matmul(const Jet& a, Op op_a, const Jet& b, Op op_b, Jet& out, unsigned wanted = all_components);
// out = a ⊙ b (elementwise).
void jet_hadamard(const Jet& a, const Jet& b, Jet& out);
// The terms of component s of a ⊙ b by the product rule, in jet_hadamard's order: x[k] ⊙ y[k] for k <
// the count returned (x from a, y from b). jet_hadamard sums an entry's terms as x_0 y_0, then
// fma(x_k, y_k, ·) for each further one; a fused pass that forms one side on the fly sums alike (same bits).
int product_terms(const Jet& a, const Jet& b, int s, const Buffer** x, const Buffer** y);
// out = a ⊙ b where b is a row vector (1 x cols) jet broadcast over rows.
void jet_scale_columns(const Jet& a, const Jet& row, Jet& out);
// out = a ⊙ b where b is a column vector (rows x 1) jet broadcast over columns.
void jet_scale_rows(const Jet& a, const Jet& column, Jet& out);
// out = f(a) elementwise, given derivatives[k] = f^(k)(a.c[0]) for k = 0..a.m (Faà di Bruno).
void jet_apply(const Jet& a, const Buffer* derivatives, Jet& out);
// The same with derivative k at *derivatives[k], for an `out` that already holds the value: out.m = a.m
// and out.c[0] = f(a.c[0]), marked non-zero, the other components marked zero (no copy of the value).
void jet_apply_in_place(const Jet& a, const Buffer* const* derivatives, Jet& out);
// d[k] = d^k/dx^k x^p for k = 0..order, elementwise: jet_apply's derivatives for x^p.
void power_derivatives(const Eigen::Ref<const Matrix>& x, double p, int order, Buffer* d);
// Linear maps, componentwise.
void jet_column_sums(const Jet& a, Jet& out);  // 1 x cols: sums over rows
void jet_row_sums(const Jet& a, Jet& out);     // rows x 1: sums over columns
void jet_add_to_columns(Jet& a, const Jet& column);  // a += column broadcast over columns
void jet_subtract_row(Jet& a, const Jet& row);       // a -= row broadcast over rows
void jet_axpy(double alpha, const Jet& x, Jet& y);   // y += alpha x

// Per-channel maps of a batch of images (features = channels x pixels per sample, core/shape.hpp):
// out (channels x 1) = Σ over pixels and samples, componentwise.
void jet_channel_sums(const Jet& a, Index pixels, Jet& out);
// out = a ⊙ c with the channel jet c (channels x 1) broadcast over pixels and samples (product rule).
void jet_scale_channels(const Jet& a, const Jet& c, Index pixels, Jet& out);
// a += alpha c, c (channels x 1) broadcast over pixels and samples, componentwise.
void jet_add_to_channels(Jet& a, double alpha, const Jet& c, Index pixels);

}  // namespace eomlab
