#include <gtest/gtest.h>

#include <cmath>

#include "core/rng.hpp"

using namespace eomlab;

// Reference outputs of the published algorithms (Vigna's splitmix64.c and xoshiro256starstar.c).
TEST(Rng, SplitMix64MatchesReference) {
  std::uint64_t x = 0;
  EXPECT_EQ(splitmix64(x), 0xE220A8397B1DCDAFULL);
}

TEST(Rng, Xoshiro256StarStarMatchesReference) {
  Rng r = Rng::from_state(1, 2, 3, 4);
  EXPECT_EQ(r.next_u64(), 11520ULL);
  EXPECT_EQ(r.next_u64(), 0ULL);
  EXPECT_EQ(r.next_u64(), 1509978240ULL);
  EXPECT_EQ(r.next_u64(), 1215971899390074240ULL);
}

TEST(Rng, SameSeedSameNumbersOtherStreamsDiffer) {
  Rng a(7, 1), b(7, 1), c(7, 2), d(8, 1);
  for (int i = 0; i < 100; ++i) {
    const double x = a.normal();
    EXPECT_EQ(x, b.normal());
    EXPECT_NE(x, c.normal());
    EXPECT_NE(x, d.normal());
  }
}

TEST(Rng, UniformAndNormalMoments) {
  Rng r(42);
  const int n = 200000;
  double su = 0, sn = 0, sn2 = 0;
  for (int i = 0; i < n; ++i) {
    const double u = r.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    su += u;
    const double z = r.normal();
    sn += z;
    sn2 += z * z;
  }
  EXPECT_NEAR(su / n, 0.5, 0.005);
  EXPECT_NEAR(sn / n, 0.0, 0.01);
  EXPECT_NEAR(sn2 / n, 1.0, 0.02);
}

TEST(Rng, BelowIsInRangeAndCoversIt) {
  Rng r(3);
  int counts[5] = {};
  for (int i = 0; i < 5000; ++i) {
    const auto k = r.below(5);
    ASSERT_LT(k, 5u);
    ++counts[k];
  }
  for (int c : counts) EXPECT_GT(c, 800);
}
