// The products of a stride-1 conv with few taps (C·K·K <= direct_conv_max_taps, such as a first layer
// on 1 or 3 channels) computed straight from the zero-padded input, without patches: GEMMs with K = C·K·K
// this small run at well under their rate (BENCHMARKS.md: the example CNN's first conv), while these
// loops keep the FMA units busy.
//
// The padded input of a sample is its planes with rows of width Wp = W + 2·pad, one after another
// (H + 2·pad rows each), then slack. Output pixel (i, j) of tap (c, ki, kj) reads entry
// c·plane + (i + ki)·Wp + j + kj: a fixed offset per tap from i·Wp + j.
//
// Bits: a forward entry is the FMA chain over the taps in patch order from 0, then + 0.0 (which is how
// OpenBLAS's Zen kernel forms patches·Wᵀ for the example CNN's first conv: its outputs kept their bits);
// a weight-gradient entry is four partial sums (lane j mod 4 of each output row), each an FMA chain over
// samples, rows and columns in order, added as (s0 + s1) + (s2 + s3). The vectorized and the portable
// loops give the same bits (tests/unit/test_conv_direct.cpp builds both).
#pragma once
#include <vector>

#include "model/buffer.hpp"
#include "model/conv_lowering.hpp"

namespace eomlab {

inline constexpr Index direct_conv_max_taps = 32;

class DirectConv {
 public:
  static bool applies(const ConvGeometry& g) { return g.stride == 1 && g.patch() <= direct_conv_max_taps; }
  static bool vectorized();  // AVX2 loops (else the portable ones; EOMLAB_PORTABLE_LOOPS asks for them)
  explicit DirectConv(const ConvGeometry& g);  // needs applies(g)

  // Pads columns [first, first + count) of x (C·H·W x n), the chunk the calls below refer to.
  void load(const Eigen::Ref<const Matrix>& x, Index first, Index count);
  // The chunk convolved with wt (C·K·K x OUT): y + i·Ho·Wo + o·ldy holds sample i's Ho·Wo outputs of channel o.
  void forward(const Eigen::Ref<const Matrix>& wt, double* y, Index ldy);
  // sums (start_sums) += the chunk's weight gradient for δ, laid out as y above (delta, ldd).
  void accumulate(const double* delta, Index ldd, Buffer& sums) const;
  void start_sums(Buffer& sums) const;
  // grad (OUT x C·K·K) = the partial sums added.
  void finish(const Buffer& sums, Eigen::Ref<Matrix> grad) const;

 private:
  ConvGeometry g_;
  Index wp_, plane_, q_, sample_;  // padded row width, plane, forward outputs per channel (with the rows' ends), sample
  std::vector<Index> offsets_;     // per tap
  Buffer padded_, wt_, flat_;      // the chunk's padded samples; wt with OUT rounded up to 4; forward outputs
};

}  // namespace eomlab
