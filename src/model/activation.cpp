#include "model/activation.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.hpp"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define EOMLAB_TANH_AVX2 1
#endif

namespace eomlab {

namespace detail {

// tanh(x) = A + N/D, one division (activation.hpp):
//   |x| <= 0.625: A = x, N = x·s·P(s), D = Q(s), s = x² (Cephes' rational approximation);
//   |x| >  0.625: A = ±1, N = ∓2(q − p), D = 2^k(q + p) + (q − p), where e^y = 2^k·(q + p)/(q − p) is
//   Cephes' Padé exp of y = min(2|x|, 50) = k·ln 2 + g (as Eigen's pexp), so that A + N/D = ±(1 − 2/(e^y + 1)).
//   Beyond 50, 1 − 2/(e^y + 1) rounds to 1 all the same. A NaN takes the first branch and stays NaN.
// The polynomials' coefficients, shared by the scalar and the vector code.
namespace tanh_coefficients {
constexpr double edge = 0.625, top = 50.0, log2e = 1.4426950408889634073599;
constexpr double c1 = 0.693145751953125, c2 = 1.42860682030941723212e-6;  // ln 2 = c1 + c2
constexpr double p0 = 1.26177193074810590878e-4, p1 = 3.02994407707441961300e-2, p2 = 9.99999999999999999910e-1;
constexpr double q0 = 3.00198505138664455042e-6, q1 = 2.52448340349684104192e-3, q2 = 2.27265548208155028766e-1,
                 q3 = 2.00000000000000000009e0;
constexpr double a0 = -9.64399179425052238628e-1, a1 = -9.92877231001918586564e1, a2 = -1.61468768441708447952e3;
constexpr double b1 = 1.12811678491632931402e2, b2 = 2.23548839060100448583e3, b3 = 4.84406305325125486048e3;
}  // namespace tanh_coefficients

double tanh_portable(double x) {
  using namespace tanh_coefficients;
  const double ax = std::fabs(x);
  if (!(ax > edge)) {
    const double s = x * x;
    const double p = std::fma(std::fma(a0, s, a1), s, a2);
    const double q = std::fma(std::fma(s + b1, s, b2), s, b3);
    return x + x * s * p / q;
  }
  const double y = std::fmin(2.0 * ax, top);
  const double k = std::floor(std::fma(log2e, y, 0.5));
  const double g = std::fma(-k, c2, std::fma(-k, c1, y));
  const double g2 = g * g;
  const double p = std::fma(std::fma(p0, g2, p1), g2, p2) * g;
  const double q = std::fma(std::fma(std::fma(q0, g2, q1), g2, q2), g2, q3);
  const double d = std::fma(std::ldexp(1.0, static_cast<int>(k)), q + p, q - p);
  return std::copysign(1.0, x) - std::copysign(2.0 * (q - p), x) / d;
}

}  // namespace detail

namespace {

constexpr Index tanh_block = 64;

#ifdef EOMLAB_TANH_AVX2
// detail::tanh_portable's two branches for 4 entries, selected before the one division.
inline __m256d tanh_of_pack(__m256d x) {
  using namespace detail::tanh_coefficients;
  const auto c = [](double v) { return _mm256_set1_pd(v); };
  const __m256d sign = c(-0.0);
  const __m256d ax = _mm256_andnot_pd(sign, x), sx = _mm256_and_pd(sign, x);
  const __m256d y = _mm256_min_pd(_mm256_mul_pd(c(2.0), ax), c(top));  // NaN: top
  const __m256d k = _mm256_floor_pd(_mm256_fmadd_pd(c(log2e), y, c(0.5)));
  const __m256d g = _mm256_fnmadd_pd(k, c(c2), _mm256_fnmadd_pd(k, c(c1), y));
  const __m256d g2 = _mm256_mul_pd(g, g);
  const __m256d p = _mm256_mul_pd(_mm256_fmadd_pd(_mm256_fmadd_pd(c(p0), g2, c(p1)), g2, c(p2)), g);
  const __m256d q = _mm256_fmadd_pd(_mm256_fmadd_pd(_mm256_fmadd_pd(c(q0), g2, c(q1)), g2, c(q2)), g2, c(q3));
  const __m256i k64 = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(k));
  const __m256d two_k = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(k64, _mm256_set1_epi64x(1023)), 52));
  const __m256d q_minus_p = _mm256_sub_pd(q, p);
  const __m256d big_d = _mm256_fmadd_pd(two_k, _mm256_add_pd(q, p), q_minus_p);
  const __m256d big_n = _mm256_xor_pd(_mm256_mul_pd(c(2.0), q_minus_p), _mm256_xor_pd(sx, sign));
  const __m256d big_a = _mm256_or_pd(c(1.0), sx);
  const __m256d s = _mm256_mul_pd(x, x);
  const __m256d small_p = _mm256_fmadd_pd(_mm256_fmadd_pd(c(a0), s, c(a1)), s, c(a2));
  const __m256d small_q = _mm256_fmadd_pd(_mm256_fmadd_pd(_mm256_add_pd(s, c(b1)), s, c(b2)), s, c(b3));
  const __m256d small_n = _mm256_mul_pd(_mm256_mul_pd(x, s), small_p);
  const __m256d big = _mm256_cmp_pd(ax, c(edge), _CMP_GT_OQ);
  const __m256d a = _mm256_blendv_pd(x, big_a, big), n = _mm256_blendv_pd(small_n, big_n, big),
                d = _mm256_blendv_pd(small_q, big_d, big);
  return _mm256_add_pd(a, _mm256_div_pd(n, d));
}
#endif

// t = tanh(x) for len entries. Every entry by the same instructions wherever it lies (a last partial
// pack is padded), so that its bits do not depend on how the samples are split.
inline void tanh_of_block(const double* x, Index len, double* t) {
#ifdef EOMLAB_TANH_AVX2
  Index i = 0;
  for (; i + 4 <= len; i += 4) _mm256_storeu_pd(t + i, tanh_of_pack(_mm256_loadu_pd(x + i)));
  if (i == len) return;
  alignas(32) double pad[4] = {0.0, 0.0, 0.0, 0.0};
  std::copy(x + i, x + len, pad);
  _mm256_store_pd(pad, tanh_of_pack(_mm256_load_pd(pad)));
  std::copy(pad, pad + (len - i), t + i);
#else
  for (Index i = 0; i < len; ++i) t[i] = detail::tanh_portable(x[i]);
#endif
}

// tanh and its first `order` derivatives of every entry (out[0..order] already of z's shape), in one
// pass over L1-sized blocks: tanh_of_block fills a block, then loops the compiler vectorizes finish it.
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
