// The vectorized tanh (and the portable one) against std::tanh over 2^-60 .. 2^12 in both signs, its
// bits independent of an entry's place, and the activations' derivatives against central differences.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "model/activation.hpp"

using namespace eomlab;

TEST(Activation, VectorizedTanhIsWithinTwoUlpOfStdTanh) {
  const Index n = 1 << 20;
  Matrix x(n, 1);
  Rng rng(5, rng_stream::test);
  for (Index i = 0; i < n; ++i) x(i) = std::ldexp((rng.uniform() < 0.5 ? -1.0 : 1.0) * (0.5 + 0.5 * rng.uniform()), static_cast<int>(i % 73) - 60);
  x(0) = 0.0;
  x(1) = 0.625;
  x(2) = std::nextafter(0.625, 1.0);
  x(3) = -0.625;
  x(4) = 800.0;
  x(5) = -800.0;
  x(6) = std::nan("");
  x(7) = HUGE_VAL;
  x(8) = -HUGE_VAL;
  Matrix t;
  tanh_into(x, t);
  double worst = 0;
  for (Index i = 0; i < n; ++i) {
    const double ref = std::tanh(x(i));
    if (t(i) == ref || (std::isnan(t(i)) && std::isnan(ref))) continue;
    const double ulp = std::abs(std::nextafter(ref, 2.0) - ref);
    worst = std::max(worst, std::abs(t(i) - ref) / ulp);
  }
  EXPECT_LE(worst, 2.0);
  EXPECT_EQ(t(4), 1.0);
  EXPECT_EQ(t(5), -1.0);
  EXPECT_EQ(t(0), 0.0);
  EXPECT_TRUE(std::isnan(t(6)));
  EXPECT_EQ(t(7), 1.0);
  EXPECT_EQ(t(8), -1.0);
}

// An entry's bits do not depend on where it lies (the last partial pack of a length is padded, not taken
// by other code): every length from 1 to 130 of values spread over both branches, against the same values
// inside a longer matrix at another offset. And the portable code (builds without AVX2) within 2 ulp of
// std::tanh over the same values as the vector code, with NaN and ±inf.
TEST(Activation, TanhOfAnEntryDoesNotDependOnItsPlace) {
  Rng rng(9, rng_stream::test);
  for (Index len = 1; len <= 130; ++len) {
    Matrix y(len, 1), longer(len + 7, 1);
    for (Index i = 0; i < len + 7; ++i) longer(i) = (i % 2 ? -1.0 : 1.0) * 3.0 * rng.uniform();
    for (Index i = 0; i < len; ++i) y(i) = longer(i + 5);
    Matrix t, u;
    tanh_into(y, t);
    tanh_into(longer, u);
    EXPECT_EQ(std::memcmp(t.data(), u.data() + 5, static_cast<std::size_t>(len) * sizeof(double)), 0) << "length " << len;
  }
}

TEST(Activation, PortableTanhIsWithinTwoUlpOfStdTanh) {
  Rng rng(5, rng_stream::test);
  double worst = 0;
  for (int i = 0; i < (1 << 20); ++i) {
    const double x = std::ldexp((rng.uniform() < 0.5 ? -1.0 : 1.0) * (0.5 + 0.5 * rng.uniform()), i % 73 - 60);
    const double t = detail::tanh_portable(x), ref = std::tanh(x);
    if (t == ref) continue;
    worst = std::max(worst, std::abs(t - ref) / std::abs(std::nextafter(ref, 2.0) - ref));
  }
  EXPECT_LE(worst, 2.0);
  EXPECT_EQ(detail::tanh_portable(0.0), 0.0);
  EXPECT_EQ(detail::tanh_portable(800.0), 1.0);
  EXPECT_EQ(detail::tanh_portable(-HUGE_VAL), -1.0);
  EXPECT_TRUE(std::isnan(detail::tanh_portable(std::nan(""))));
}

TEST(Activation, DerivativesMatchCentralDifferences) {
  Matrix z(1, 9);
  z << -3.0, -1.2, -0.6, -0.1, 0.05, 0.3, 0.7, 1.5, 4.0;
  for (Activation a : {Activation::tanh, Activation::softplus, Activation::gelu, Activation::silu}) {
    Matrix d[5], up[5], down[5];
    const int order = a == Activation::silu ? 4 : 3;
    apply_activation(a, z, order, d);
    const double h = 1e-6;
    for (int k = 0; k < order; ++k) {
      const Matrix zp = z.array() + h, zm = z.array() - h;
      apply_activation(a, zp, order, up);
      apply_activation(a, zm, order, down);
      const Matrix fd = (up[k] - down[k]) / (2 * h);
      EXPECT_LT((fd - d[k + 1]).cwiseAbs().maxCoeff(), 1e-8) << to_string(a) << " derivative " << k + 1;
    }
  }
}

// A derivative beyond those an activation computes is an error, not an uninitialised matrix (a jet in 3
// directions asks σ'''' of the activation).
TEST(Activation, DerivativesBeyondTheAvailableAreRefused) {
  const Matrix z = Matrix::Constant(2, 3, 0.4);
  Matrix d[6];
  for (Activation a : {Activation::tanh, Activation::softplus, Activation::gelu})
    EXPECT_THROW(apply_activation(a, z, 4, d), Error) << to_string(a);
  for (Activation a : {Activation::silu, Activation::relu}) {
    EXPECT_NO_THROW(apply_activation(a, z, 4, d)) << to_string(a);
    EXPECT_THROW(apply_activation(a, z, 5, d), Error) << to_string(a);
  }
}
