// The vectorized tanh against std::tanh over 2^-60 .. 2^12 in both signs, and the activations'
// derivatives against central differences.
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
  Matrix t;
  tanh_into(x, t);
  double worst = 0;
  for (Index i = 0; i < n; ++i) {
    const double ref = std::tanh(x(i));
    if (t(i) == ref) continue;
    const double ulp = std::abs(std::nextafter(ref, 2.0) - ref);
    worst = std::max(worst, std::abs(t(i) - ref) / ulp);
  }
  EXPECT_LE(worst, 2.0);
  EXPECT_EQ(t(4), 1.0);
  EXPECT_EQ(t(5), -1.0);
  EXPECT_EQ(t(0), 0.0);
}

// Beyond 0.625, tanh is ±(1 - 2/(e + 1)) with e Eigen's exp of 2|x| (packets, then its scalar exp for the
// last len % packet entries); the AVX2 path's own exp must give the same bits (up to 2|x| = 50, and 1
// beyond). 2^20 values spread evenly in log from 45 down to 0.625 after some far beyond, both signs; then
// every length from 1 to 130 of values in (0.625, 2), where a last-bit change of e shows most, so that
// the scalar tails are checked too.
TEST(Activation, TanhOfLargeArgumentsHasTheBitsOfEigensExp) {
  const auto differences = [](const Matrix& x) {
    Matrix t;
    tanh_into(x, t);
    const Eigen::ArrayXd e = (2.0 * x.array().abs()).exp();
    Index differ = 0;
    for (Index i = 0; i < x.size(); ++i) {
      const double expected = std::fabs(x(i)) > 0.625 ? std::copysign(1.0 - 2.0 / (e(i) + 1.0), x(i)) : t(i);
      differ += std::memcmp(&expected, &t(i), sizeof(double)) != 0;
    }
    return differ;
  };
  std::vector<double> values{60.0, 354.0, 355.0, 709.0, 710.0, 1e300, HUGE_VAL};
  const int count = 1 << 20;
  for (int i = count; i >= 0; --i) values.push_back(0.625 * std::pow(72.0, static_cast<double>(i) / count));
  const Index n = static_cast<Index>(values.size());
  Matrix x(n, 1);
  for (Index i = 0; i < n; ++i) x(i) = i % 2 ? -values[static_cast<std::size_t>(i)] : values[static_cast<std::size_t>(i)];
  EXPECT_EQ(differences(x), 0) << "of " << n;
  Rng rng(9, rng_stream::test);
  for (Index len = 1; len <= 130; ++len) {
    Matrix y(len, 1);
    for (Index i = 0; i < len; ++i) y(i) = (i % 2 ? -1.0 : 1.0) * (0.625 + 1.375 * rng.uniform());
    EXPECT_EQ(differences(y), 0) << "length " << len;
  }
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
