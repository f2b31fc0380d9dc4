// The data movement that lowers a 2-D convolution (model/layers/conv.cpp) to GEMMs, on a chunk of
// samples at a time. Batches are feature columns (features x samples, a sample's features in torch's
// C x H x W order); the GEMMs work on stacked matrices with one row per (sample, output pixel):
//   patches  (count·Ho·Wo) x (C·K·K): row s·Ho·Wo + p holds sample s's input window at output pixel p
//            (im2col; zero where the window covers padding), column (c·K + ki)·K + kj;
//   stacked  (count·Ho·Wo) x OUT: the same rows, one column per output channel.
#pragma once
#include "core/shape.hpp"
#include "core/types.hpp"
#include "model/buffer.hpp"

namespace eomlab {

struct ConvGeometry {
  Index c = 0, h = 0, w = 0;            // input
  Index out = 0, k = 0, stride = 1, pad = 0;
  Index ho = 0, wo = 0;                 // output: (h + 2 pad - k) / stride + 1, floor

  void set_input(const Shape& in);      // needs k, stride, pad; k must fit the padded input
  Index patch() const { return c * k * k; }
  Index pixels() const { return ho * wo; }
};

// Samples per chunk: the most whose patches (or stacked outputs) of one jet component take at most
// 256 KB, at least one (one sample of the example CNN's second conv takes 451 KB). Chunks of 4 MB, eight
// times a Zen 3 core's L2 cache, were slower (BENCHMARKS.md); an HVP's chunk holds two components side by
// side, T's four. A chunk's weight gradient is one GEMM over its samples, added to the sum of the chunks
// before: the chunk size sets how those sums are grouped (but for convs that go direct, model/conv_direct.hpp,
// whose partial sums run over the samples one by one). The adjoint conv's patches of δ (below) have
// OUT·K·K columns: a conv that widens (OUT > C) holds OUT / C times the budget in them.
Index conv_chunk_samples(const ConvGeometry& g);

// patches <- im2col of columns [first, first + count) of x (C·H·W x n).
void gather_patches(const ConvGeometry& g, const Eigen::Ref<const Matrix>& x, Index first, Index count, Buffer& patches);
// The same into count·Ho·Wo x C·K·K column-major storage at `patches` (e.g. a column block of a larger matrix).
void gather_patches(const ConvGeometry& g, const Eigen::Ref<const Matrix>& x, Index first, Index count, double* patches);
// Columns [first, first + count) of dx <- the adjoint of gather_patches applied to `patches` (col2im; convs
// whose adjoint is not a conv).
void scatter_patches(const ConvGeometry& g, const Eigen::Ref<const Matrix>& patches, Index first, Index count, Buffer& dx);
// Stride 1 with 2·pad = K - 1 (an output of the input's size): the conv's adjoint with respect to its
// input is itself such a conv, from OUT channels to C, its kernel turned by 180°. An input delta is then
// the adjoint's patches of δ times its weights, one GEMM with K = OUT·K·K, where otherwise δ·W (K = OUT)
// gives patch deltas that scatter_patches adds back onto the input. The same patches give the weight
// gradient: (the inputs stacked)ᵀ times them is ∂/∂W with the kernel flipped.
bool adjoint_is_conv(const ConvGeometry& g);
ConvGeometry adjoint_geometry(const ConvGeometry& g);  // needs adjoint_is_conv(g)
// flipped (OUT·K·K x C) <- the adjoint's Wᵀ: flipped((o·K + a)·K + b, c) = wt((c·K + K-1-a)·K + K-1-b, o)
// from the conv's wt (C·K·K x OUT).
void flip_kernel(const ConvGeometry& g, const Eigen::Ref<const Matrix>& wt, Eigen::Ref<Matrix> flipped);
// The patches, for g with an output of its input's size, of a chunk of `count` samples given stacked
// (count·H·W x C column-major, as stack_columns writes it) into column-major storage at `patches`.
void gather_stacked_patches(const ConvGeometry& g, const double* stacked, Index count, double* patches);

// stacked (count·Ho·Wo x OUT) <- columns [first, first + count) of y (OUT·Ho·Wo x n).
void stack_columns(const ConvGeometry& g, const Eigen::Ref<const Matrix>& y, Index first, Index count, Buffer& stacked);
// The same into count·Ho·Wo x OUT column-major storage at `stacked`.
void stack_columns(const ConvGeometry& g, const Eigen::Ref<const Matrix>& y, Index first, Index count, double* stacked);
// Columns [first, first + count) of y <- stacked, plus bias[o] on channel o if given.
void unstack_columns(const ConvGeometry& g, const Eigen::Ref<const Matrix>& stacked, const Buffer* bias, Index first, Buffer& y);

}  // namespace eomlab
