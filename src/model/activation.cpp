#include "model/activation.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.hpp"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define EOMLAB_TANH_EXP_AVX2 1
#endif

namespace eomlab {

namespace {

constexpr Index tanh_block = 64;

#ifdef EOMLAB_TANH_EXP_AVX2
// e = exp(min(2|x|, 50)) for n entries, n a multiple of 4: Eigen 3.4's packet exp (pexp_double) step for
// step, hence its bits, but for its last step: 2^k (k <= 72 here) is put into the exponent field at
// once, where Eigen multiplies by four factors so as not to overflow. Both scalings are exact. Beyond 50
// the exp differs, but 1 - 2/(e + 1) rounds to 1 for every e > 2^55 (2|x| > 38.2) all the same.
// The compiler fuses multiplies and adds here as in Eigen's code (GCC: the two subtractions of k·C1 and
// k·C2 become FMAs in both) because the expressions have the same shape: keep it so.
void exp_of_twice_abs(const double* x, Index n, double* e) {
  const __m256d sign = _mm256_set1_pd(-0.0), two = _mm256_set1_pd(2.0), one = _mm256_set1_pd(1.0), half = _mm256_set1_pd(0.5);
  const __m256d top = _mm256_set1_pd(50.0), log2e = _mm256_set1_pd(1.4426950408889634073599);
  const __m256d c1 = _mm256_set1_pd(0.693145751953125), c2 = _mm256_set1_pd(1.42860682030941723212e-6);
  const __m256d p0 = _mm256_set1_pd(1.26177193074810590878e-4), p1 = _mm256_set1_pd(3.02994407707441961300e-2),
                p2 = _mm256_set1_pd(9.99999999999999999910e-1);
  const __m256d q0 = _mm256_set1_pd(3.00198505138664455042e-6), q1 = _mm256_set1_pd(2.52448340349684104192e-3),
                q2 = _mm256_set1_pd(2.27265548208155028766e-1), q3 = _mm256_set1_pd(2.00000000000000000009e0);
  const __m256i bias = _mm256_set1_epi64x(1023);
  for (Index i = 0; i < n; i += 4) {
    const __m256d y = _mm256_min_pd(_mm256_mul_pd(two, _mm256_andnot_pd(sign, _mm256_loadu_pd(x + i))), top);
    const __m256d k = _mm256_floor_pd(_mm256_fmadd_pd(log2e, y, half));
    const __m256d g = _mm256_sub_pd(_mm256_sub_pd(y, _mm256_mul_pd(k, c1)), _mm256_mul_pd(k, c2));
    const __m256d g2 = _mm256_mul_pd(g, g);
    const __m256d p = _mm256_mul_pd(_mm256_fmadd_pd(_mm256_fmadd_pd(p0, g2, p1), g2, p2), g);
    const __m256d q = _mm256_fmadd_pd(_mm256_fmadd_pd(_mm256_fmadd_pd(q0, g2, q1), g2, q2), g2, q3);
    const __m256d r = _mm256_fmadd_pd(two, _mm256_div_pd(p, _mm256_sub_pd(q, p)), one);
    const __m256i k64 = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(k));
    _mm256_storeu_pd(e + i, _mm256_mul_pd(r, _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(k64, bias), 52))));
  }
}
#endif

// t = tanh(x) for len <= tanh_block entries. Both branches are computed in loops of their own and
// selected after: one loop with the select in it becomes control flow (its divisions may not be
// speculated under -ftrapping-math) and runs scalar; these loops vectorize, with the same operations
// on every entry, hence the same bits.
inline void tanh_of_block(const double* x, Index len, double* t) {
  alignas(64) double e[tanh_block];
  alignas(64) double small[tanh_block];
  // Eigen's exp of a map takes its packet path for the whole packets and its scalar one for the rest.
  Index packets = 0;
#ifdef EOMLAB_TANH_EXP_AVX2
  using Packets = Eigen::internal::packet_traits<double>;
  if constexpr (Packets::HasExp && Packets::size % 4 == 0) {
    packets = len - len % Packets::size;
    exp_of_twice_abs(x, packets, e);
  }
#endif
  Eigen::Map<Eigen::ArrayXd>(e + packets, len - packets) =
      (2.0 * Eigen::Map<const Eigen::ArrayXd>(x + packets, len - packets).abs()).exp();
  for (Index i = 0; i < len; ++i) {
    const double s = x[i] * x[i];
    const double p = (-9.64399179425052238628E-1 * s - 9.92877231001918586564E1) * s - 1.61468768441708447952E3;
    const double q = ((s + 1.12811678491632931402E2) * s + 2.23548839060100448583E3) * s + 4.84406305325125486048E3;
    small[i] = x[i] + x[i] * s * p / q;
  }
  for (Index i = 0; i < len; ++i) e[i] = std::copysign(1.0 - 2.0 / (e[i] + 1.0), x[i]);
  for (Index i = 0; i < len; ++i) t[i] = std::fabs(x[i]) > 0.625 ? e[i] : small[i];
}

// tanh and its first `order` derivatives of every entry (out[0..order] already of z's shape), in one
// pass over L1-sized blocks: the packet exp fills a block, then branch-free loops the compiler
// vectorizes finish it (one Eigen expression with nested select()s runs scalar).
template <class Out>
void tanh_with_derivatives(const Eigen::Ref<const Matrix>& z, int order, Out out) {
  constexpr Index block = tanh_block;
  const Index n = z.size();
  for (Index start = 0; start < n; start += block) {
    const Index len = std::min(block, n - start);
    const double* x = z.data() + start;
    double* t = out[0].data() + start;
    tanh_of_block(x, len, t);
    if (order < 1) continue;
    double* d1 = out[1].data() + start;
    for (Index i = 0; i < len; ++i) d1[i] = 1.0 - t[i] * t[i];
    if (order < 2) continue;
    double* d2 = out[2].data() + start;
    for (Index i = 0; i < len; ++i) d2[i] = -2.0 * t[i] * d1[i];
    if (order < 3) continue;
    double* d3 = out[3].data() + start;
    for (Index i = 0; i < len; ++i) d3[i] = d1[i] * (6.0 * t[i] * t[i] - 2.0);
  }
}

// silu(z) = z·s, s = 1/(1 + e^{-z}): silu^(k) = k·s^(k-1) + z·s^(k), with the logistic's derivatives
// s' = s(1-s), s'' = s'(1-2s), s''' = s'(1-6s+6s²), s'''' = s'(1-2s)(1-12s+12s²). The logistic lives in
// out[0] until the end (Buffers must not allocate).
template <class Out, class Z>
void silu_with_derivatives(const Z& z, int order, Out out) {
  out[0].array() = 1.0 / (1.0 + (-z).exp());
  const auto s = out[0].array();
  const auto ds = s * (1.0 - s);
  if (order >= 4) out[4].array() = 4.0 * ds * (1.0 - 6.0 * s + 6.0 * s * s) + z * ds * (1.0 - 2.0 * s) * (1.0 - 12.0 * s + 12.0 * s * s);
  if (order >= 3) out[3].array() = 3.0 * ds * (1.0 - 2.0 * s) + z * ds * (1.0 - 6.0 * s + 6.0 * s * s);
  if (order >= 2) out[2].array() = 2.0 * ds + z * ds * (1.0 - 2.0 * s);
  if (order >= 1) out[1].array() = s + z * ds;
  out[0].array() *= z;
}

}  // namespace

void tanh_first_order_jet(const Eigen::Ref<const Matrix>& z, const Eigen::Ref<const Matrix>& dz, Buffer& t, Buffer& slope,
                          Buffer& dt, Buffer& dslope) {
  for (Buffer* b : {&t, &slope, &dt, &dslope}) b->resize(z.rows(), z.cols());
  alignas(64) double d2[tanh_block];
  const Index n = z.size();
  for (Index start = 0; start < n; start += tanh_block) {
    const Index len = std::min(tanh_block, n - start);
    double* value = t.data() + start;
    double* d1 = slope.data() + start;
    const double* x1 = dz.data() + start;
    double* y1 = dt.data() + start;
    double* s1 = dslope.data() + start;
    tanh_of_block(z.data() + start, len, value);
    // As tanh_with_derivatives, then jet_apply_in_place's single term (f^(k)·dz + 0.0).
    for (Index i = 0; i < len; ++i) d1[i] = 1.0 - value[i] * value[i];
    for (Index i = 0; i < len; ++i) d2[i] = -2.0 * value[i] * d1[i];
    for (Index i = 0; i < len; ++i) y1[i] = d1[i] * x1[i] + 0.0;
    for (Index i = 0; i < len; ++i) s1[i] = d2[i] * x1[i] + 0.0;
  }
}

void tanh_into(const Matrix& z, Matrix& out) {
  out.resize(z.rows(), z.cols());
  tanh_with_derivatives(z, 0, &out);
}

template <class Out>
void apply_activation(Activation a, const Eigen::Ref<const Matrix>& z, int order, Out out) {
  const int available = a == Activation::silu || a == Activation::relu ? 4 : 3;
  if (order < 0 || order > available)
    throw Error("apply_activation: derivative " + std::to_string(order) + " of " + to_string(a) + " is not available");
  for (int j = 0; j <= order; ++j) out[j].resize(z.rows(), z.cols());
  const auto zz = z.array();
  switch (a) {
    case Activation::tanh:
      tanh_with_derivatives(z, order, out);
      break;
    case Activation::softplus: {
      // The logistic s = σ'(z) lives in out[1]; no temporaries (Buffers must not allocate).
      if (order >= 1) {
        out[1].array() = 1.0 / (1.0 + (-zz).exp());
        const auto s = out[1].array();
        if (order >= 3) out[3].array() = s * (1.0 - s) * (1.0 - 2.0 * s);
        if (order >= 2) out[2].array() = s * (1.0 - s);
      }
      out[0].array() = zz.max(0.0) + (-zz.abs()).exp().log1p();
      break;
    }
    case Activation::gelu: {
      // Φ(z) is computed once into out[0] (erfc is scalar); the density φ(z) is cheap and stays lazy.
      const auto pdf = (-0.5 * zz.square()).exp() * (0.5 * M_2_SQRTPI * M_SQRT1_2);
      out[0].array() = 0.5 * (-zz * M_SQRT1_2).unaryExpr([](double x) { return std::erfc(x); });
      if (order >= 1) out[1].array() = out[0].array() + zz * pdf;
      if (order >= 2) out[2].array() = pdf * (2.0 - zz.square());
      if (order >= 3) out[3].array() = pdf * (zz.cube() - 4.0 * zz);
      out[0].array() *= zz;
      break;
    }
    case Activation::silu:
      silu_with_derivatives(zz, order, out);
      break;
    case Activation::relu: {
      out[0].array() = zz.max(0.0);
      if (order >= 1) out[1].array() = (zz > 0.0).cast<double>();
      for (int j = 2; j <= order; ++j) out[j].setZero();
      break;
    }
  }
}

template void apply_activation(Activation, const Eigen::Ref<const Matrix>&, int, Matrix*);
template void apply_activation(Activation, const Eigen::Ref<const Matrix>&, int, Buffer*);
template void apply_activation(Activation, const Eigen::Ref<const Matrix>&, int, BufferRefs);

}  // namespace eomlab
