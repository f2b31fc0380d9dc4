// The direct products of stride-1 convs with few taps (model/conv_direct.hpp) against their defining FMA
// chains, bit for bit, and against im2col's patches times the weights. Built twice: with the library's
// loops (AVX2 where the compiler targets it) and with conv_direct.cpp compiled for its portable loops
// (test_conv_direct_portable), which must give the same bits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <tuple>

#include "core/rng.hpp"
#include "model/conv_direct.hpp"
#include "model/conv_lowering.hpp"

using namespace eomlab;

// Direct products of stride-1 convs with few taps, on a chunk of samples inside the batch: the forward
// outputs are the FMA chain over the taps in patch order from 0, then + 0.0, bit for bit, and agree with
// patches·Wᵀ; the weight gradient is four partial sums per entry (lane j mod 4 of each output row, an
// FMA chain over samples, rows and columns), added as (s0 + s1) + (s2 + s3), bit for bit, and agrees
// with δᵀ·patches summed over the samples. Widths and channel counts that 4 does not divide take the
// loops' remainders; other geometries keep the patches.
TEST(ConvDirect, ProductsAreTheirDefiningChainsBits) {
#ifdef EOMLAB_EXPECT_PORTABLE_LOOPS
  ASSERT_FALSE(DirectConv::vectorized());
#elif defined(__AVX2__) && defined(__FMA__)
  ASSERT_TRUE(DirectConv::vectorized());
#endif
  SCOPED_TRACE(DirectConv::vectorized() ? "AVX2 loops" : "portable loops");
  struct Case {
    Index c, h, w, out, k, pad;
  };
  for (const Case& t : {Case{1, 28, 28, 32, 3, 1}, Case{3, 8, 8, 16, 3, 1}, Case{1, 7, 9, 2, 3, 0}, Case{2, 5, 6, 5, 3, 2},
                        Case{1, 6, 11, 3, 5, 2}, Case{3, 4, 3, 7, 1, 0}, Case{1, 1, 1, 4, 3, 1}, Case{2, 9, 5, 9, 4, 1}}) {
    ConvGeometry g;
    g.out = t.out, g.k = t.k, g.pad = t.pad;
    g.set_input({t.c, t.h, t.w});
    SCOPED_TRACE(testing::Message() << "C " << t.c << ", " << t.h << " x " << t.w << ", OUT " << t.out << ", K " << t.k
                                    << ", pad " << t.pad);
    ASSERT_TRUE(DirectConv::applies(g));
    const Index n = 5, first = 1, count = 3, px = g.pixels(), taps = g.patch();
    Rng r(17, rng_stream::test);
    Matrix x(g.c * g.h * g.w, n), wt(taps, g.out), delta(count * px, g.out);  // δ stacked as the layer holds it
    for (Matrix* m : {&x, &wt, &delta})
      for (Index i = 0; i < m->size(); ++i) m->data()[i] = r.normal();
    Buffer patches;
    gather_patches(g, x, first, count, patches);  // im2col (test_conv_layers checks it against direct loops)
    // Input feature of tap (c, ki, kj) at output pixel (i, j) of sample s, 0 in the padding.
    const auto input = [&](Index s, Index tap, Index i, Index j) {
      const Index c = tap / (g.k * g.k), ki = tap / g.k % g.k, kj = tap % g.k;
      const Index row = i - g.pad + ki, col = j - g.pad + kj;
      return row < 0 || row >= g.h || col < 0 || col >= g.w ? 0.0 : x((c * g.h + row) * g.w + col, first + s);
    };

    DirectConv direct(g);
    direct.load(x, first, count);
    Matrix y = Matrix::Constant(count * px, g.out, 7.0);
    direct.forward(wt, y.data(), y.rows());
    Matrix chains(count * px, g.out);
    for (Index s = 0; s < count; ++s)
      for (Index o = 0; o < g.out; ++o)
        for (Index i = 0; i < g.ho; ++i)
          for (Index j = 0; j < g.wo; ++j) {
            double acc = 0.0;
            for (Index tap = 0; tap < taps; ++tap) acc = std::fma(input(s, tap, i, j), wt(tap, o), acc);
            chains(s * px + i * g.wo + j, o) = acc + 0.0;
          }
    EXPECT_EQ(std::memcmp(y.data(), chains.data(), sizeof(double) * static_cast<std::size_t>(y.size())), 0);
    const Matrix want = patches * wt;
    EXPECT_LT((y - want).norm(), 1e-14 * want.norm());

    Buffer sums;
    direct.start_sums(sums);
    direct.accumulate(delta.data(), delta.rows(), sums);
    Matrix grad = Matrix::Constant(g.out, taps, 7.0);
    direct.finish(sums, grad);
    Matrix lanes_sum(g.out, taps);
    for (Index o = 0; o < g.out; ++o)
      for (Index tap = 0; tap < taps; ++tap) {
        double lane[4] = {0.0, 0.0, 0.0, 0.0};
        for (Index s = 0; s < count; ++s)
          for (Index i = 0; i < g.ho; ++i)
            for (Index j = 0; j < g.wo; ++j)
              lane[j % 4] = std::fma(input(s, tap, i, j), delta(s * px + i * g.wo + j, o), lane[j % 4]);
        lanes_sum(o, tap) = (lane[0] + lane[1]) + (lane[2] + lane[3]);
      }
    EXPECT_EQ(std::memcmp(grad.data(), lanes_sum.data(), sizeof(double) * static_cast<std::size_t>(grad.size())), 0);
    const Matrix grad_want = delta.transpose() * patches;
    EXPECT_LT((grad - grad_want).norm(), 1e-14 * grad_want.norm());
  }
  for (const auto& [c, k, stride] : {std::tuple<Index, Index, Index>{1, 3, 2}, {4, 3, 1}, {1, 6, 1}, {2, 1, 2}}) {
    ConvGeometry g;
    g.out = 2, g.k = k, g.stride = stride, g.pad = 1;
    g.set_input({c, 8, 8});
    EXPECT_FALSE(DirectConv::applies(g)) << "C " << c << ", K " << k << ", stride " << stride;
  }
}

// A row whose end takes the loops' last, partial vector, with products that underflow to -0.0: the
// lanes past the row's end must keep their -0.0 sums (the defining chains skip them), so the entry is -0.0.
TEST(ConvDirect, LanesPastARowsEndKeepTheirSignedZeros) {
  ConvGeometry g;
  g.out = 1, g.k = 1, g.pad = 0;
  g.set_input({1, 1, 5});
  const Matrix x = Matrix::Constant(5, 1, 1e-170), delta = Matrix::Constant(5, 1, -1e-170);
  DirectConv direct(g);
  direct.load(x, 0, 1);
  Buffer sums;
  direct.start_sums(sums);
  direct.accumulate(delta.data(), 5, sums);
  Matrix grad(1, 1);
  direct.finish(sums, grad);
  EXPECT_EQ(grad(0, 0), 0.0);
  EXPECT_TRUE(std::signbit(grad(0, 0)));
}
