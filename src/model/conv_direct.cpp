#include "model/conv_direct.hpp"

#include <algorithm>
#include <cmath>

#if defined(__AVX2__) && defined(__FMA__) && !defined(EOMLAB_PORTABLE_LOOPS)
#include <immintrin.h>
#define EOMLAB_DIRECT_CONV_AVX2 1
#endif

namespace eomlab {
namespace {

Index round_up(Index n, Index m) { return (n + m - 1) / m * m; }

// Output channels per block of the forward loops (wt is padded to a multiple of it); forward outputs per
// block (q_ is a multiple of it).
constexpr Index forward_channels = 4, forward_outputs = 8;

#ifdef EOMLAB_DIRECT_CONV_AVX2
// Output channels and taps per block of the weight gradient's loops.
constexpr Index gradient_channels = 4, gradient_taps = 3;

// flat[o·q + p] for p in [0, q), o in [o0, o0 + 4): the FMA chains over the taps.
void forward_block(const double* x, const Index* offsets, Index taps, const double* wt, Index ldw, Index o0, Index q,
                   double* flat) {
  for (Index p = 0; p < q; p += forward_outputs) {
    __m256d a00 = _mm256_setzero_pd(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    const double* w = wt + o0 * ldw;
    for (Index t = 0; t < taps; ++t) {
      const double* src = x + offsets[t] + p;
      const __m256d x0 = _mm256_loadu_pd(src), x1 = _mm256_loadu_pd(src + 4);
      __m256d b = _mm256_broadcast_sd(w + t);
      a00 = _mm256_fmadd_pd(x0, b, a00), a01 = _mm256_fmadd_pd(x1, b, a01);
      b = _mm256_broadcast_sd(w + ldw + t);
      a10 = _mm256_fmadd_pd(x0, b, a10), a11 = _mm256_fmadd_pd(x1, b, a11);
      b = _mm256_broadcast_sd(w + 2 * ldw + t);
      a20 = _mm256_fmadd_pd(x0, b, a20), a21 = _mm256_fmadd_pd(x1, b, a21);
      b = _mm256_broadcast_sd(w + 3 * ldw + t);
      a30 = _mm256_fmadd_pd(x0, b, a30), a31 = _mm256_fmadd_pd(x1, b, a31);
    }
    double* y = flat + o0 * q + p;
    _mm256_storeu_pd(y, a00), _mm256_storeu_pd(y + 4, a01);
    _mm256_storeu_pd(y + q, a10), _mm256_storeu_pd(y + q + 4, a11);
    _mm256_storeu_pd(y + 2 * q, a20), _mm256_storeu_pd(y + 2 * q + 4, a21);
    _mm256_storeu_pd(y + 3 * q, a30), _mm256_storeu_pd(y + 3 * q + 4, a31);
  }
}

// sums[((o0 + c)·taps + t0 + t)·4 + lane] += the chains of channels o0 .. o0 + NO - 1 and taps t0 .. t0 + NT - 1.
template <int NO, int NT>
void gradient_block(const double* x, const Index* offsets, Index taps, Index t0, const double* delta, Index ldd,
                    Index o0, Index rows, Index cols, Index wp, double* sums) {
  __m256d acc[NO][NT];
  for (int c = 0; c < NO; ++c)
    for (int t = 0; t < NT; ++t) acc[c][t] = _mm256_loadu_pd(sums + ((o0 + c) * taps + t0 + t) * 4);
  const Index full = cols / 4 * 4;
  const __m256i lane = _mm256_set_epi64x(3, 2, 1, 0);
  const __m256i mask = _mm256_cmpgt_epi64(_mm256_set1_epi64x(cols - full), lane);
  for (Index r = 0; r < rows; ++r) {
    const double* d = delta + r * cols;
    const double* xr = x + r * wp;
    for (Index j = 0; j < full; j += 4) {
      __m256d dv[NO];
      for (int c = 0; c < NO; ++c) dv[c] = _mm256_loadu_pd(d + (o0 + c) * ldd + j);
      for (int t = 0; t < NT; ++t) {
        const __m256d xv = _mm256_loadu_pd(xr + offsets[t0 + t] + j);
        for (int c = 0; c < NO; ++c) acc[c][t] = _mm256_fmadd_pd(xv, dv[c], acc[c][t]);
      }
    }
    if (full == cols) continue;
    // The row's last columns: lanes past its end keep their sums as they are (not even + 0.0, which
    // would turn a -0.0 into +0.0), as the portable loops skip them.
    __m256d dv[NO];
    for (int c = 0; c < NO; ++c) dv[c] = _mm256_maskload_pd(d + (o0 + c) * ldd + full, mask);
    for (int t = 0; t < NT; ++t) {
      const __m256d xv = _mm256_maskload_pd(xr + offsets[t0 + t] + full, mask);
      for (int c = 0; c < NO; ++c)
        acc[c][t] = _mm256_blendv_pd(acc[c][t], _mm256_fmadd_pd(xv, dv[c], acc[c][t]), _mm256_castsi256_pd(mask));
    }
  }
  for (int c = 0; c < NO; ++c)
    for (int t = 0; t < NT; ++t) _mm256_storeu_pd(sums + ((o0 + c) * taps + t0 + t) * 4, acc[c][t]);
}

template <int NO>
void gradient_channels_block(const double* x, const Index* offsets, Index taps, const double* delta, Index ldd, Index o0,
                             Index rows, Index cols, Index wp, double* sums) {
  Index t0 = 0;
  for (; t0 + gradient_taps <= taps; t0 += gradient_taps)
    gradient_block<NO, gradient_taps>(x, offsets, taps, t0, delta, ldd, o0, rows, cols, wp, sums);
  for (; t0 < taps; ++t0) gradient_block<NO, 1>(x, offsets, taps, t0, delta, ldd, o0, rows, cols, wp, sums);
}
#else
void forward_block(const double* x, const Index* offsets, Index taps, const double* wt, Index ldw, Index o0, Index q,
                   double* flat) {
  for (Index c = 0; c < forward_channels; ++c)
    for (Index p = 0; p < q; ++p) {
      double acc = 0.0;
      for (Index t = 0; t < taps; ++t) acc = std::fma(x[offsets[t] + p], wt[(o0 + c) * ldw + t], acc);
      flat[(o0 + c) * q + p] = acc;
    }
}
#endif

}  // namespace

bool DirectConv::vectorized() {
#ifdef EOMLAB_DIRECT_CONV_AVX2
  return true;
#else
  return false;
#endif
}

DirectConv::DirectConv(const ConvGeometry& g)
    : g_(g), wp_(g.w + 2 * g.pad), plane_((g.h + 2 * g.pad) * wp_), q_(round_up(g.ho * wp_, forward_outputs)) {
  // The forward loops read up to output q_ - 1 of the last tap: (C - 1)·plane + (K - 1)·Wp + K - 1 beyond it.
  sample_ = round_up(g.c * plane_ + (q_ - g.ho * wp_) + g.k, 4);
  for (Index c = 0; c < g.c; ++c)
    for (Index ki = 0; ki < g.k; ++ki)
      for (Index kj = 0; kj < g.k; ++kj) offsets_.push_back(c * plane_ + ki * wp_ + kj);
}

void DirectConv::load(const Eigen::Ref<const Matrix>& x, Index first, Index count) {
  padded_.resize(sample_, count);
  padded_.setZero();
  for (Index i = 0; i < count; ++i)
    for (Index c = 0; c < g_.c; ++c)
      for (Index r = 0; r < g_.h; ++r) {
        const double* from = x.col(first + i).data() + (c * g_.h + r) * g_.w;
        std::copy(from, from + g_.w, padded_.col(i).data() + c * plane_ + (r + g_.pad) * wp_ + g_.pad);
      }
}

void DirectConv::forward(const Eigen::Ref<const Matrix>& wt, double* y, Index ldy) {
  const Index taps = g_.patch(), channels = round_up(g_.out, forward_channels);
  wt_.resize(taps, channels);
  wt_.leftCols(g_.out) = wt;
  wt_.rightCols(channels - g_.out).setZero();
  flat_.resize(q_, channels);
  for (Index i = 0; i < padded_.cols(); ++i) {
    for (Index o0 = 0; o0 < channels; o0 += forward_channels)
      forward_block(padded_.col(i).data(), offsets_.data(), taps, wt_.data(), taps, o0, q_, flat_.data());
    double* sample = y + i * g_.pixels();
    for (Index o = 0; o < g_.out; ++o)
      for (Index r = 0; r < g_.ho; ++r)
        for (Index j = 0; j < g_.wo; ++j) sample[o * ldy + r * g_.wo + j] = flat_(r * wp_ + j, o) + 0.0;
  }
}

void DirectConv::start_sums(Buffer& sums) const {
  sums.resize(4 * g_.patch(), g_.out);
  sums.setZero();
}

void DirectConv::accumulate(const double* delta, Index ldd, Buffer& sums) const {
  const Index taps = g_.patch();
  for (Index i = 0; i < padded_.cols(); ++i) {
    const double* x = padded_.col(i).data();
    const double* d = delta + i * g_.pixels();
#ifdef EOMLAB_DIRECT_CONV_AVX2
    Index o0 = 0;
    for (; o0 + gradient_channels <= g_.out; o0 += gradient_channels)
      gradient_channels_block<gradient_channels>(x, offsets_.data(), taps, d, ldd, o0, g_.ho, g_.wo, wp_, sums.data());
    for (; o0 < g_.out; ++o0) gradient_channels_block<1>(x, offsets_.data(), taps, d, ldd, o0, g_.ho, g_.wo, wp_, sums.data());
#else
    for (Index o = 0; o < g_.out; ++o)
      for (Index t = 0; t < taps; ++t) {
        double* lanes = sums.data() + (o * taps + t) * 4;
        for (Index r = 0; r < g_.ho; ++r)
          for (Index j = 0; j < g_.wo; ++j)
            lanes[j % 4] = std::fma(x[offsets_[static_cast<std::size_t>(t)] + r * wp_ + j], d[o * ldd + r * g_.wo + j], lanes[j % 4]);
      }
#endif
  }
}

void DirectConv::finish(const Buffer& sums, Eigen::Ref<Matrix> grad) const {
  const Index taps = g_.patch();
  for (Index o = 0; o < g_.out; ++o)
    for (Index t = 0; t < taps; ++t) {
      const double* s = sums.data() + (o * taps + t) * 4;
      grad(o, t) = (s[0] + s[1]) + (s[2] + s[3]);
    }
}

}  // namespace eomlab
