// The image layers of DESIGN.md §3.6 (conv, avgpool, maxpool, globalavgpool, flatten) and silu: values
// against direct loops over torch's definitions and layout, exact derivatives of small networks against
// central finite differences (gradient, HVP, T[u, v]) and their symmetries, and refusal of bad
// arguments and input shapes naming the layer.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <utility>

#include "core/error.hpp"
#include "core/reducer.hpp"
#include "core/rng.hpp"
#include "diff/objective.hpp"
#include "model/architecture.hpp"
#include "model/conv_lowering.hpp"
#include "model/layer.hpp"
#include "model/sequence.hpp"
#include "support/error_of.hpp"
#include "support/finite_difference.hpp"
#include "support/images.hpp"
#include "support/random_vector.hpp"

using namespace eomlab;
using test::error_of;
using test::random_images;
using test::random_vector;

namespace {

Model image_model(const std::string& architecture, const Shape& in, LossKind loss = LossKind::mse) {
  ModelConfig config;
  config.architecture = architecture;
  config.loss = loss;
  return make_model(config, in);
}

// out[o, i, j] = b[o] + Σ_{c, a, b} W[o, c, a, b] x[c, i·S - P + a, j·S - P + b] (zero outside): torch's
// Conv2d with W (OUT x C x K x K) then b in θ, row-major.
Vector reference_conv(const Vector& theta, const Vector& x, const Shape& in, Index out, Index k, Index stride,
                      Index pad) {
  const Index ho = (in.height + 2 * pad - k) / stride + 1, wo = (in.width + 2 * pad - k) / stride + 1;
  Vector y(out * ho * wo);
  for (Index o = 0; o < out; ++o)
    for (Index i = 0; i < ho; ++i)
      for (Index j = 0; j < wo; ++j) {
        double sum = theta[out * in.channels * k * k + o];
        for (Index c = 0; c < in.channels; ++c)
          for (Index a = 0; a < k; ++a)
            for (Index b = 0; b < k; ++b) {
              const Index r = i * stride - pad + a, q = j * stride - pad + b;
              if (r < 0 || r >= in.height || q < 0 || q >= in.width) continue;
              sum += theta[((o * in.channels + c) * k + a) * k + b] * x[(c * in.height + r) * in.width + q];
            }
        y[(o * ho + i) * wo + j] = sum;
      }
  return y;
}

// im2col and its adjoint by direct loops (model/conv_lowering.hpp's layout): f(patch row, patch column,
// input feature, sample) for every patch entry inside the input, patch column by patch column, (c, ki,
// kj) in order, as the lowering goes, so the adjoint's sums round alike.
template <class F>
void for_each_patch_entry(const ConvGeometry& g, Index count, F f) {
  for (Index c = 0; c < g.c; ++c)
    for (Index a = 0; a < g.k; ++a)
      for (Index b = 0; b < g.k; ++b)
        for (Index s = 0; s < count; ++s)
          for (Index i = 0; i < g.ho; ++i)
            for (Index j = 0; j < g.wo; ++j) {
              const Index r = i * g.stride - g.pad + a, q = j * g.stride - g.pad + b;
              if (r >= 0 && r < g.h && q >= 0 && q < g.w)
                f(s * g.pixels() + i * g.wo + j, (c * g.k + a) * g.k + b, (c * g.h + r) * g.w + q, s);
            }
}

Matrix reference_patches(const ConvGeometry& g, const Matrix& x, Index first, Index count) {
  Matrix patches = Matrix::Zero(count * g.pixels(), g.patch());
  for_each_patch_entry(g, count, [&](Index row, Index col, Index feature, Index s) { patches(row, col) = x(feature, first + s); });
  return patches;
}

Matrix reference_scatter(const ConvGeometry& g, const Matrix& patches, Index n, Index first, Index count) {
  Matrix dx = Matrix::Constant(g.c * g.h * g.w, n, 7.0);
  dx.middleCols(first, count).setZero();
  for_each_patch_entry(g, count, [&](Index row, Index col, Index feature, Index s) { dx(feature, first + s) += patches(row, col); });
  return dx;
}

// Whether a and b are the same matrices bit for bit (shapes, then every entry's bytes).
bool same_bits(const Eigen::Ref<const Matrix>& a, const Eigen::Ref<const Matrix>& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), sizeof(double) * static_cast<std::size_t>(a.size())) == 0;
}

}  // namespace

// im2col's "same"-size fast path (stride 1, 2·pad = K - 1: shifted planes copied in runs) and its
// general one, and col2im, on shapes whose shifts reach past a whole row or column; bit for bit,
// including on a chunk of columns inside the batch.
TEST(ConvLowering, PatchesAndTheirAdjointAreTheDirectLoopsBits) {
  struct Case {
    Index c, h, w, k, stride, pad;
  };
  for (const Case& t : {Case{2, 5, 6, 3, 1, 1}, Case{1, 4, 4, 1, 1, 0}, Case{3, 7, 5, 5, 1, 2}, Case{1, 1, 1, 3, 1, 1},
                        Case{2, 1, 3, 3, 1, 1}, Case{1, 2, 1, 5, 1, 2}, Case{1, 3, 2, 7, 1, 3}, Case{1, 300, 3, 5, 1, 2},
                        Case{2, 6, 700, 3, 1, 1}, Case{2, 7, 7, 3, 2, 1}, Case{1, 6, 5, 3, 1, 0}, Case{2, 5, 5, 2, 1, 1}}) {
    ConvGeometry g;
    g.out = 2, g.k = t.k, g.stride = t.stride, g.pad = t.pad;
    g.set_input({t.c, t.h, t.w});
    SCOPED_TRACE(testing::Message() << "C " << t.c << ", " << t.h << " x " << t.w << ", K " << t.k << ", stride "
                                    << t.stride << ", pad " << t.pad);
    const Index n = 4, first = 1, count = 2;
    Rng r(5, rng_stream::test);
    Matrix x(g.c * g.h * g.w, n);
    for (Index i = 0; i < x.size(); ++i) x.data()[i] = r.normal();
    Buffer patches;
    patches.resize(3, 3);
    patches.setConstant(7.0);  // stale contents must not survive
    gather_patches(g, x, first, count, patches);
    const Matrix expected = reference_patches(g, x, first, count);
    ASSERT_EQ(patches.rows(), expected.rows());
    ASSERT_EQ(patches.cols(), expected.cols());
    EXPECT_EQ(std::memcmp(patches.data(), expected.data(), sizeof(double) * static_cast<std::size_t>(expected.size())), 0);

    Matrix delta(expected.rows(), expected.cols());
    for (Index i = 0; i < delta.size(); ++i) delta.data()[i] = r.normal();
    Buffer dx;
    dx.resize(x.rows(), n);
    dx.setConstant(7.0);
    scatter_patches(g, delta, first, count, dx);
    const Matrix want = reference_scatter(g, delta, n, first, count);
    EXPECT_EQ(std::memcmp(dx.data(), want.data(), sizeof(double) * static_cast<std::size_t>(want.size())), 0);
  }
}

// A conv with an output of its input's size takes its input delta as the adjoint conv of δ: the
// adjoint's patches of δ (stacked, as the layer holds a chunk of δ) are the direct loops' bits, and
// times the flipped kernel they give the patch deltas δ·Wᵀ scattered back (the general path), up to
// the order of the sums; the stacked inputs times them give the weight gradient, flipped. Other
// geometries keep the general path.
TEST(ConvLowering, TheAdjointOfASameSizeConvIsAConv) {
  struct Case {
    Index c, h, w, out, k;
  };
  for (const Case& t : {Case{2, 5, 6, 3, 3}, Case{3, 7, 5, 2, 5}, Case{1, 1, 1, 4, 3}, Case{4, 3, 8, 1, 1},
                        Case{2, 4, 4, 3, 7}}) {
    ConvGeometry g;
    g.out = t.out, g.k = t.k, g.pad = (t.k - 1) / 2;
    g.set_input({t.c, t.h, t.w});
    SCOPED_TRACE(testing::Message() << "C " << t.c << ", " << t.h << " x " << t.w << ", OUT " << t.out << ", K " << t.k);
    ASSERT_TRUE(adjoint_is_conv(g));
    const ConvGeometry a = adjoint_geometry(g);
    EXPECT_EQ(a.c, g.out);
    EXPECT_EQ(a.out, g.c);
    const Index count = 3, rows = count * g.pixels();
    Rng r(11, rng_stream::test);
    Matrix delta(rows, g.out), wt(g.patch(), g.out);  // δ stacked: column o holds the samples' planes of channel o
    for (Index i = 0; i < delta.size(); ++i) delta.data()[i] = r.normal();
    for (Index i = 0; i < wt.size(); ++i) wt.data()[i] = r.normal();
    Matrix columns(g.out * g.pixels(), count);  // the same δ as feature columns
    for (Index s = 0; s < count; ++s)
      for (Index o = 0; o < g.out; ++o) columns.col(s).segment(o * g.pixels(), g.pixels()) = delta.col(o).segment(s * g.pixels(), g.pixels());
    Matrix patches = Matrix::Constant(rows, a.patch(), 7.0);
    gather_stacked_patches(a, delta.data(), count, patches.data());
    const Matrix expected = reference_patches(a, columns, 0, count);
    EXPECT_EQ(std::memcmp(patches.data(), expected.data(), sizeof(double) * static_cast<std::size_t>(expected.size())), 0);

    Matrix flipped(a.patch(), g.c);
    flip_kernel(g, wt, flipped);
    const Matrix stacked_dx = patches * flipped;
    Buffer dx;
    dx.resize(g.c * g.pixels(), count);
    unstack_columns(a, stacked_dx, nullptr, 0, dx);
    const Matrix want = reference_scatter(g, delta * wt.transpose(), count, 0, count);
    EXPECT_LT((dx - want).norm(), 1e-14 * want.norm());
    EXPECT_GT(want.norm(), 0.0);

    // The weight gradient from the same patches of δ: Xᵀ·P(δ) (X the inputs stacked) is δᵀ·patches(X)
    // with the kernel flipped, entry (c, (o·K + a)·K + b) for W[o, c, K-1-a, K-1-b].
    Matrix x_stacked(rows, g.c), x_columns(g.c * g.pixels(), count);
    for (Index i = 0; i < x_stacked.size(); ++i) x_stacked.data()[i] = r.normal();
    for (Index s = 0; s < count; ++s)
      for (Index c = 0; c < g.c; ++c) x_columns.col(s).segment(c * g.pixels(), g.pixels()) = x_stacked.col(c).segment(s * g.pixels(), g.pixels());
    const Matrix grad_w = delta.transpose() * reference_patches(g, x_columns, 0, count);  // OUT x C·K·K
    const Matrix flipped_grad = x_stacked.transpose() * patches;                           // C x OUT·K·K
    Matrix unflipped(g.out, g.patch());
    for (Index o = 0; o < g.out; ++o)
      for (Index c = 0; c < g.c; ++c)
        for (Index p = 0; p < g.k; ++p)
          for (Index q = 0; q < g.k; ++q)
            unflipped(o, (c * g.k + p) * g.k + q) = flipped_grad(c, (o * g.k + g.k - 1 - p) * g.k + g.k - 1 - q);
    EXPECT_LT((unflipped - grad_w).norm(), 1e-14 * grad_w.norm());
  }
  for (const auto& [k, stride, pad] : {std::tuple<Index, Index, Index>{3, 1, 0}, {3, 2, 1}, {2, 1, 1}, {1, 2, 0}}) {
    ConvGeometry g;
    g.out = 2, g.k = k, g.stride = stride, g.pad = pad;
    g.set_input({2, 6, 6});
    EXPECT_FALSE(adjoint_is_conv(g)) << "K " << k << ", stride " << stride << ", pad " << pad;
  }
}

// A stride-1 conv with few taps behind a layer with parameters gets directional inputs in an HVP's
// pass. Its value still goes direct there (model/conv_direct.hpp), as in a gradient's pass, so the
// network's value has the same bits in both.
TEST(ConvLayer, AValueHasTheSameBitsInGradientAndHvpPasses) {
  // The second convs: 9, 18 and 27 taps, 3, 5 and 7 channels, with and without padding. Taken as GEMMs
  // in the HVP's pass, their values differed in the last bits here (OpenBLAS's Zen kernels).
  for (const auto& [architecture, side] : {std::pair<std::string, Index>{"conv(1, 3, stride=2), tanh, conv(3, 3, pad=1), flatten, dense(2)", 9},
                                           {"conv(2, 3, stride=2), tanh, conv(5, 3, pad=1), flatten, dense(2)", 13},
                                           {"conv(3, 3, stride=2), tanh, conv(7, 3), flatten, dense(2)", 17}}) {
    SCOPED_TRACE(architecture);
    LayerSequence net(parse_architecture(architecture), Shape{2, side, side});
    net.place(0, "layer");
    Rng r(23, rng_stream::test);
    Vector theta(net.n_params()), v(net.n_params());
    for (Vector* p : {&theta, &v})
      for (Index i = 0; i < p->size(); ++i) (*p)(i) = r.normal();
    Matrix x(2 * side * side, 5);
    for (Index i = 0; i < x.size(); ++i) x.data()[i] = r.normal();
    LocalReducer local;
    Scratch scratch;
    Jet in;
    in.set_constant(0, x);
    net.forward({theta, nullptr, 0, local}, in, scratch);
    const Matrix gradient_pass = net.output().c[0];
    const Vector* directions[] = {&v};
    in.set_constant(1, x);
    net.forward({theta, directions, 1, local}, in, scratch);
    EXPECT_TRUE(same_bits(net.output().c[0], gradient_pass));
  }
}

// A conv taken as GEMMs forms A_0's terms of several components in one GEMM (a fan) where the BLAS gives
// the first block the bits of A_0·W_0 alone: its value and its input delta (the adjoint conv's) have
// the same bits with 0 to 3 directions. Odd channel counts are among the cases: here OpenBLAS treats a
// last odd column apart, and a fan taken there anyway changes those bits. On 14 x 14 planes the 7
// samples come in chunks of 4 then 3, or of 2 with a last single sample (ChunksOfTheTestNetworks).
TEST(ConvLayer, FansKeepTheValueAndInputDeltaBitsOfEveryPass) {
  for (const auto& [architecture, shape] : {std::pair<std::string, Shape>{"conv(4, 3, pad=1)", {4, 6, 5}}, {"conv(3, 3, pad=1)", {4, 6, 5}},
                                            {"conv(4, 3, pad=1)", {5, 6, 5}}, {"conv(5, 3, pad=1)", {7, 6, 5}},
                                            {"conv(4, 3, pad=1)", {4, 14, 14}}, {"conv(6, 3, pad=1)", {7, 14, 14}}}) {
    SCOPED_TRACE(architecture + " on " + shape.text());
    LayerSequence net(parse_architecture(architecture), shape);
    net.place(0, "layer");
    Rng r(29, rng_stream::test);
    const Vector theta = random_vector(net.n_params(), 29), u = random_vector(net.n_params(), 30),
                 v = random_vector(net.n_params(), 31), w = random_vector(net.n_params(), 32);
    const Index samples = 7;
    const auto random_matrix = [&](Index rows) {
      Matrix x(rows, samples);
      for (Index i = 0; i < x.size(); ++i) x.data()[i] = r.normal();
      return x;
    };
    const Matrix x = random_matrix(shape.size()), delta0 = random_matrix(net.output_shape().size());
    LocalReducer local;
    Scratch scratch;
    Matrix value, input_delta;
    for (int m = 0; m <= 3; ++m) {
      SCOPED_TRACE("jets of " + std::to_string(m) + " directions");
      const Vector* directions[] = {&u, &v, &w};
      Jet in;
      in.set_constant(m, x);
      for (int t = 1; t < in.size(); ++t) in.set(t, x.rows(), x.cols()) = random_matrix(x.rows());
      net.forward({theta, directions, m, local}, in, scratch);
      Jet delta;
      delta.set_constant(m, delta0);
      for (int t = 1; t < delta.size(); ++t) delta.set(t, delta0.rows(), delta0.cols()) = random_matrix(delta0.rows());
      Vector out(net.n_params()), first(net.n_params());
      net.backward({m, out, m > 0 ? &first : nullptr, local}, in, delta, true, scratch);
      if (m == 0) {
        value = net.output().c[0];
        input_delta = delta.c[0];
        continue;
      }
      EXPECT_TRUE(same_bits(net.output().c[0], value));
      EXPECT_TRUE(same_bits(delta.c[0], input_delta));
    }
  }
}

TEST(ConvLayer, ValueIsTorchsCrossCorrelation) {
  struct Case {
    Shape in;
    Index out, k, stride, pad, samples;
  };
  // The last case needs several chunks of samples (ChunksOfTheTestNetworks).
  for (const Case& c : {Case{{1, 5, 5}, 2, 3, 1, 0, 3}, Case{{2, 7, 6}, 3, 3, 2, 1, 4}, Case{{3, 4, 9}, 2, 2, 3, 2, 2},
                        Case{{2, 6, 6}, 4, 1, 1, 0, 2}, Case{{1, 3, 3}, 2, 5, 1, 1, 2}, Case{{4, 10, 10}, 3, 5, 1, 2, 25}}) {
    const std::string text = "conv(" + std::to_string(c.out) + ", " + std::to_string(c.k) + ", stride=" +
                             std::to_string(c.stride) + ", pad=" + std::to_string(c.pad) + ")";
    const Model model = image_model(text, c.in);
    ASSERT_EQ(model.n_params(), c.out * c.in.channels * c.k * c.k + c.out) << text;
    const Vector theta = random_vector(model.n_params(), 3);
    const Dataset d = random_images(c.in, c.samples, LossKind::mse, 1, 4);
    const Matrix y = model.outputs(theta, d.x);
    for (Index s = 0; s < c.samples; ++s) {
      const Vector expected = reference_conv(theta, d.x.col(s), c.in, c.out, c.k, c.stride, c.pad);
      ASSERT_EQ(y.rows(), expected.size()) << text;
      EXPECT_LT((y.col(s) - expected).norm(), 1e-12 * expected.norm()) << text << " sample " << s;
    }
  }
}

// The chunked test cases (here and below) cover what their comments say: whole chunks of several samples
// and a last, smaller one.
TEST(ConvLayer, ChunksOfTheTestNetworks) {
  const auto chunk = [](Shape in, Index out, Index k, Index pad) {
    ConvGeometry g;
    g.out = out;
    g.k = k;
    g.pad = pad;
    g.set_input(in);
    return conv_chunk_samples(g);
  };
  EXPECT_EQ(chunk({4, 10, 10}, 3, 5, 2), 3);   // ValueIsTorchsCrossCorrelation: 25 samples
  EXPECT_EQ(chunk({8, 12, 12}, 2, 3, 1), 3);   // ImageDerivatives' chunked: 10 samples
  EXPECT_EQ(chunk({1, 16, 16}, 32, 3, 1), 4);  // FusedPassesGiveTheReferenceBits' chunked: 6 samples
  EXPECT_EQ(chunk({32, 8, 8}, 8, 3, 1), 1);   // and its second conv, one sample at a time
}

TEST(ConvLayer, BlocksFollowTorchsLayout) {
  const Model model = image_model("conv(4, 3, pad=1), tanh, conv(2, 2), flatten, dense(3)", {2, 5, 5});
  EXPECT_EQ(model.architecture(), "conv(4, 3, pad=1), tanh, conv(2, 2), flatten, dense(3)");
  const auto blocks = model.blocks();
  ASSERT_EQ(blocks.size(), 6u);
  EXPECT_EQ(blocks[0].name, "layer0.W");
  EXPECT_EQ(blocks[0].rows, 4);
  EXPECT_EQ(blocks[0].cols, 2 * 3 * 3);
  EXPECT_EQ(blocks[1].name, "layer0.b");
  EXPECT_EQ(blocks[1].offset, 4 * 18);
  EXPECT_EQ(blocks[2].offset, 4 * 18 + 4);
  EXPECT_EQ(blocks[2].cols, 4 * 2 * 2);
  EXPECT_EQ(model.n_outputs(), 3);
}

TEST(ConvLayer, ChannelAndLinearBlocks) {
  const auto conv = make_layer({"conv", {"3", "2", "stride=2"}}, Shape(2, 4, 4));
  conv->place(10, "layer0");
  const auto channels = conv->channel_blocks();
  ASSERT_EQ(channels.size(), 3u);
  EXPECT_EQ(channels[1].name, "layer0.W[1]");
  EXPECT_EQ(channels[1].offset, 10 + 8);
  EXPECT_EQ(channels[1].size, 8);
  ASSERT_TRUE(conv->linear_block().has_value());
  EXPECT_EQ(conv->linear_block()->size, 3 * 8 + 3);
  EXPECT_EQ(conv->output_shape(), Shape(3, 2, 2));
}

TEST(PoolingLayers, ValuesFollowTorchsDefinitions) {
  const Shape in{2, 5, 4};
  Matrix x(in.size(), 2);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = std::sin(1.7 * static_cast<double>(i));
  x(0, 1) = x(1, 1) = 5.0;  // a tie: the first maximum is taken
  const auto at = [&](Index c, Index i, Index j, Index s) { return x((c * in.height + i) * in.width + j, s); };
  const Matrix avg = image_model("avgpool(2), flatten", in).outputs(Vector(0), x);
  const Matrix max = image_model("maxpool(2), flatten", in).outputs(Vector(0), x);
  const Matrix global = image_model("globalavgpool", in).outputs(Vector(0), x);
  ASSERT_EQ(avg.rows(), 2 * 2 * 2);  // floor: the last row is dropped
  for (Index s = 0; s < 2; ++s)
    for (Index c = 0; c < 2; ++c) {
      for (Index i = 0; i < 2; ++i)
        for (Index j = 0; j < 2; ++j) {
          const double a = at(c, 2 * i, 2 * j, s), b = at(c, 2 * i, 2 * j + 1, s), d = at(c, 2 * i + 1, 2 * j, s),
                       e = at(c, 2 * i + 1, 2 * j + 1, s);
          EXPECT_DOUBLE_EQ(avg((c * 2 + i) * 2 + j, s), (a + b + d + e) / 4);
          EXPECT_EQ(max((c * 2 + i) * 2 + j, s), std::max({a, b, d, e}));
        }
      EXPECT_NEAR(global(c, s), x.col(s).segment(c * in.pixels(), in.pixels()).mean(), 1e-15);
    }
  EXPECT_EQ(image_model("flatten", in).outputs(Vector(0), x), x);
}

TEST(PoolingLayers, MaxPoolCarriesTheFirstMaximumsDerivatives) {
  // z = x0 + x1 ties at pixels 1 and 2, whose derivatives in W differ: on the tie the gradient is the
  // one of the first maximum (torch's rule), as if the second were a little smaller.
  const Shape in{2, 2, 2};
  const auto gradient = [&](double second) {
    Dataset d = random_images(in, 1, LossKind::mse, 1, 1);
    d.x.col(0) << 1.0, 3.0, 1.0, 2.0, 0.0, 0.0, second, 0.0;
    WholeVector whole(3);
    ModelObjective f(image_model("conv(1, 1), maxpool(2), flatten", in), std::move(d), 1, 0.0, whole);
    Vector g;
    f.value_and_gradient((Vector(3) << 1.0, 1.0, 0.0).finished(), g);
    return g;
  };
  const Vector tie = gradient(2.0), below = gradient(2.0 - 1e-9), above = gradient(2.0 + 1e-9);
  EXPECT_LT((tie - below).norm(), 1e-6 * tie.norm());
  EXPECT_GT((tie - above).norm(), 0.1 * tie.norm());
}

// Each window's first maximum in row-major order, a NaN winning over numbers (the first NaN), against a
// direct loop: the value carries it, and so does every derivative component (here the component holds
// each input's own index, so it names the entry picked), for K = 2 (written out) and K = 3, with ties
// and NaNs in every position of a window.
TEST(PoolingLayers, MaxPoolPicksTheFirstMaximumOrTheFirstNaN) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (Index k : {2, 3}) {
    SCOPED_TRACE("maxpool(" + std::to_string(k) + ")");
    const Shape in{2, 3 * k + 1, 2 * k + 1};  // a row and a column that fill no window
    const Index samples = 3;
    Rng r(41, rng_stream::test);
    Matrix x(in.size(), samples);
    for (Index i = 0; i < x.size(); ++i) {
      const double u = r.uniform();
      x.data()[i] = u < 0.15 ? nan : u < 0.5 ? 1.0 : std::floor(4.0 * r.uniform());  // many ties
    }
    const std::unique_ptr<Layer> pool = make_layer({"maxpool", {std::to_string(k)}}, in);
    LocalReducer local;
    Scratch scratch;
    const Vector theta(0), v(0);
    const Vector* directions[] = {&v};
    Jet jet, out;
    jet.set_constant(1, x);
    Buffer& index = jet.set(1, x.rows(), x.cols());
    for (Index i = 0; i < index.size(); ++i) index.data()[i] = static_cast<double>(i);
    pool->forward({theta, directions, 1, local}, jet, out, scratch);
    const Shape o = pool->output_shape();
    Index nan_windows = 0;
    for (Index s = 0; s < samples; ++s)
      for (Index c = 0; c < o.channels; ++c)
        for (Index i = 0; i < o.height; ++i)
          for (Index j = 0; j < o.width; ++j) {
            Index best = -1;
            for (Index a = 0; a < k; ++a)
              for (Index b = 0; b < k; ++b) {
                const Index f = (c * in.height + i * k + a) * in.width + j * k + b;
                const double candidate = x(f, s), so_far = best < 0 ? 0.0 : x(best, s);
                if (best < 0 || (!std::isnan(so_far) && (std::isnan(candidate) || candidate > so_far))) best = f;
              }
            const Index at = (c * o.height + i) * o.width + j;
            nan_windows += std::isnan(x(best, s));
            EXPECT_TRUE(same_bits(out.c[0].block(at, s, 1, 1), x.block(best, s, 1, 1))) << "window " << at << " of sample " << s;
            EXPECT_EQ(out.c[1](at, s), static_cast<double>(best + s * in.size())) << "window " << at << " of sample " << s;
          }
    EXPECT_GT(nan_windows, 0);
  }
}

namespace {

struct Network {
  const char* name;
  const char* architecture;
  Shape input;
};

const Network networks[] = {
    {"conv_stride_pad_maxpool", "conv(3, 3, stride=2, pad=1), tanh, maxpool(2), flatten, dense(3)", {2, 7, 7}},
    {"conv_conv_avgpool", "conv(3, 3, pad=1), softplus, conv(2, 2), silu, avgpool(2), flatten, dense(3)", {2, 6, 5}},
    {"conv_strided_globalavgpool", "conv(4, 2), gelu, conv(3, 3, stride=2, pad=2), tanh, globalavgpool, dense(3)", {1, 7, 8}},
    {"silu_flatten", "conv(2, 1), silu, flatten, dense(4), silu, dense(3)", {3, 3, 3}},
    // The second conv's 10 samples span three chunks of three and one of one (ChunksOfTheTestNetworks).
    {"chunked", "conv(8, 3, pad=1), tanh, conv(2, 3, pad=1), avgpool(6), flatten, dense(3)", {1, 12, 12}},
    // Each activation's backward pass runs inside the avgpool(2)'s after it (LayerSequence fuses them).
    {"fused_activation_avgpool", "conv(3, 3, pad=1), tanh, avgpool(2), conv(2, 3, pad=1), gelu, avgpool(2), flatten, dense(3)",
     {2, 8, 8}},
    // The adjoint conv (stride 1, 2·pad = K - 1, not the first layer) of a conv that widens, with K = 5
    // on a plane that is not square.
    {"widening_adjoint", "conv(2, 3), tanh, conv(6, 5, pad=2), softplus, avgpool(2), flatten, dense(3)", {1, 7, 9}},
    // C x 1 x 1 feature maps are images (as in torch): layers after them, and 1 x 1 inputs.
    {"one_by_one_maps", "conv(3, 4, stride=2), tanh, conv(2, 1), maxpool(1), globalavgpool, dense(3)", {2, 4, 4}},
    {"one_by_one_input", "conv(2, 1), softplus, avgpool(1), flatten, dense(3)", {3, 1, 1}},
    // Layers without parameters first: the backward pass stops at the first layer with some (no δ of the input).
    {"parameterless_first", "tanh, conv(2, 3, pad=1), tanh, avgpool(2), flatten, dense(3)", {2, 6, 6}},
    {"pooling_first", "maxpool(2), conv(2, 2), gelu, flatten, dense(3)", {1, 8, 6}},
    {"flatten_first", "flatten, dense(5), tanh, dense(3)", {2, 3, 4}},
};

using DerivativeCase = std::tuple<int, LossKind>;

class ImageDerivatives : public ::testing::TestWithParam<DerivativeCase> {
 protected:
  std::unique_ptr<WholeVector> whole_;
  std::unique_ptr<ModelObjective> f_;
  Vector theta_;

  void SetUp() override {
    const auto [k, loss] = GetParam();
    const Network& net = networks[k];
    Model model = image_model(net.architecture, net.input, loss);
    theta_ = model.initial_parameters(7);
    Dataset d = random_images(net.input, 10, loss, model.n_outputs(), 8);
    whole_ = std::make_unique<WholeVector>(model.n_params());
    f_ = std::make_unique<ModelObjective>(std::move(model), std::move(d), 10, 0.0, *whole_);
  }
};

}  // namespace

TEST_P(ImageDerivatives, GradientMatchesCentralDifferences) {
  Vector g;
  f_->value_and_gradient(theta_, g);
  EXPECT_LT(test::relative_error(g, test::fd_gradient(*f_, theta_)), 1e-6);
}

TEST_P(ImageDerivatives, HessianVectorMatchesCentralDifferencesAndIsSymmetric) {
  const Vector u = random_vector(theta_.size(), 1), v = random_vector(theta_.size(), 2);
  Vector hu, hv;
  f_->hessian_vector(theta_, u, hu);
  f_->hessian_vector(theta_, v, hv);
  EXPECT_LT(test::relative_error(hv, test::fd_hessian_vector(*f_, theta_, v)), 1e-6);
  EXPECT_NEAR(u.dot(hv), v.dot(hu), 1e-12 * std::abs(u.dot(hv)));
}

TEST_P(ImageDerivatives, ThirdOrderMatchesDifferencesOfHvpsAndIsSymmetric) {
  const Vector u = random_vector(theta_.size(), 5), v = random_vector(theta_.size(), 6);
  Vector tuv, tvu;
  f_->third_order(theta_, u, v, tuv);
  f_->third_order(theta_, v, u, tvu);
  EXPECT_LT(test::relative_error(tuv, test::fd_third_order(*f_, theta_, u, v)), 1e-6);
  EXPECT_LT(test::relative_error(tvu, tuv), 1e-12);
  const Vector w = random_vector(theta_.size(), 7);
  Vector twv;
  f_->third_order(theta_, w, v, twv);
  EXPECT_NEAR(w.dot(tuv), u.dot(twv), 1e-11 * std::abs(w.dot(tuv)));
}

TEST_P(ImageDerivatives, OnePassGivesHessianAndThirdOrder) {
  const Vector u = random_vector(theta_.size(), 9);
  Vector hu, tuu, hu_alone, tuu_alone;
  f_->hessian_and_third_order(theta_, u, hu, tuu);
  f_->hessian_vector(theta_, u, hu_alone);
  f_->third_order(theta_, u, u, tuu_alone);
  EXPECT_LT(test::relative_error(hu, hu_alone), 1e-13);
  EXPECT_LT(test::relative_error(tuu, tuu_alone), 1e-13);
}

// The fused passes (an activation's backward pass inside the avgpool(2)'s after it; tanh's first-order
// jet in one pass) give the bits of the layers run one by one (the reference path), in every evaluation
// and jet order; also where the pooling cannot fuse (odd sizes) and where the activation is the first
// layer (no input delta wanted, no tangent in its input).
TEST(ImageLayers, FusedPassesGiveTheReferenceBits) {
  const Network cases[] = {
      networks[std::size(networks) - 1],
      {"odd", "conv(3, 3), silu, avgpool(2), flatten, dense(3)", {1, 7, 7}},
      {"first", "tanh, avgpool(2), conv(2, 3, pad=1), relu, avgpool(2), flatten, dense(3)", {1, 8, 8}},
      // Both convs read δ from avgpool's planes over several chunks: the first's 6 samples four and two at
      // a time, the second's one at a time (ChunksOfTheTestNetworks).
      {"chunked", "conv(32, 3, pad=1), tanh, avgpool(2), conv(8, 3, pad=1), tanh, avgpool(2), flatten, dense(3)", {1, 16, 16}},
  };
  const auto filled_same_bits = [](const Vector& a, const Vector& b) { return a.size() > 0 && same_bits(a, b); };
  for (const Network& net : cases) {
    SCOPED_TRACE(net.name);
    Model fused = image_model(net.architecture, net.input, LossKind::cross_entropy);
    Model reference = image_model(net.architecture, net.input, LossKind::cross_entropy);
    reference.use_reference_path(true);
    const Dataset d = random_images(net.input, 6, LossKind::cross_entropy, fused.n_outputs(), 3);
    const Vector theta = fused.initial_parameters(4), u = random_vector(theta.size(), 5), v = random_vector(theta.size(), 6);
    const double scale = 1.0 / 6;
    Vector a, b, c, e;
    EXPECT_EQ(fused.loss_and_gradient(theta, d, scale, a), reference.loss_and_gradient(theta, d, scale, b));
    EXPECT_TRUE(filled_same_bits(a, b));
    EXPECT_GT(a.norm(), 0.0);
    fused.hessian_vector(theta, v, d, scale, a);
    reference.hessian_vector(theta, v, d, scale, b);
    EXPECT_TRUE(filled_same_bits(a, b));
    fused.third_order(theta, u, v, d, scale, a);
    reference.third_order(theta, u, v, d, scale, b);
    EXPECT_TRUE(filled_same_bits(a, b));
    fused.hessian_and_third_order(theta, u, d, scale, a, c);
    reference.hessian_and_third_order(theta, u, d, scale, b, e);
    EXPECT_TRUE(filled_same_bits(a, b));
    EXPECT_TRUE(filled_same_bits(c, e));
    // An empty shard after a full one (a rank of a run may hold no sample of a batch): nothing of the
    // last batch's passes may linger.
    const Dataset none = random_images(net.input, 0, LossKind::cross_entropy, fused.n_outputs(), 3);
    EXPECT_EQ(fused.loss_and_gradient(theta, none, scale, a), 0.0);
    EXPECT_EQ(a.size(), theta.size());
    EXPECT_EQ(a.norm(), 0.0);
    fused.hessian_vector(theta, v, none, scale, a);
    EXPECT_EQ(a.norm(), 0.0);
  }
}

INSTANTIATE_TEST_SUITE_P(Networks, ImageDerivatives,
                         ::testing::Combine(::testing::Range(0, static_cast<int>(std::size(networks))),
                                            ::testing::Values(LossKind::cross_entropy, LossKind::mse)),
                         [](const ::testing::TestParamInfo<DerivativeCase>& param_info) {
                           return std::string(networks[std::get<0>(param_info.param)].name) + "_" +
                                  to_string(std::get<1>(param_info.param));
                         });

TEST(ImageLayers, BadArgumentsAndShapesAreRefused) {
  const Shape image{2, 5, 5};
  const std::string conv = "expected conv(OUT, K[, stride=S][, pad=P]) with whole OUT, K, S > 0 and P >= 0";
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"3"}, {"0", "3"}, {"3", "-1"}, {"3", "2x"}, {"3", "2", "stride=0"}, {"3", "2", "pad=-1"},
           {"3", "2", "dilation=2"}, {"3", "2", "stride=1", "stride=2"}, {"3", "2", "pad=1", "stride=1", "x"}}) {
    const LayerSpec spec{"conv", args};
    EXPECT_EQ(error_of([&] { make_layer(spec, image); }), "layer '" + spec.text() + "': " + conv);
  }
  EXPECT_EQ(error_of([] { make_layer({"conv", {"3", "2"}}, Shape(10)); }),
            "layer 'conv(3, 2)': expected an image input C x H x W, got a vector of 10");
  EXPECT_EQ(error_of([] { make_layer({"conv", {"3", "8", "pad=1"}}, Shape(2, 5, 5)); }),
            "layer 'conv(3, 8, pad=1)': expected a kernel no larger than the padded input, got K = 8 on 2x5x5 with pad 1");
  EXPECT_NO_THROW(make_layer({"conv", {"3", "7", "pad=1"}}, Shape(2, 5, 5)));
  EXPECT_EQ(error_of([] { make_layer({"maxpool", {"2"}}, Shape(10)); }),
            "layer 'maxpool(2)': expected an image input C x H x W, got a vector of 10");
  EXPECT_EQ(error_of([] { make_layer({"avgpool", {"6"}}, Shape(2, 5, 7)); }),
            "layer 'avgpool(6)': expected a window no larger than the input, got K = 6 on 2x5x7");
  EXPECT_EQ(error_of([] { make_layer({"avgpool", {"0"}}, Shape(2, 5, 7)); }),
            "layer 'avgpool(0)': expected avgpool(K) with a whole K > 0");
  EXPECT_EQ(error_of([] { make_layer({"maxpool", {}}, Shape(2, 5, 7)); }),
            "layer 'maxpool': expected maxpool(K) with a whole K > 0");
  EXPECT_EQ(error_of([] { make_layer({"globalavgpool", {}}, Shape(4)); }),
            "layer 'globalavgpool': expected an image input C x H x W, got a vector of 4");
  EXPECT_EQ(error_of([] { make_layer({"flatten", {"1"}}, Shape(2, 3, 3)); }), "layer 'flatten(1)': expected no arguments");
  EXPECT_EQ(error_of([] { make_layer({"silu", {"1"}}, Shape(4)); }), "layer 'silu(1)': expected no arguments");
  // Through the architecture: the layer's position and text, and the shape it got.
  EXPECT_EQ(error_of([] { image_model("conv(4, 3), flatten, maxpool(2)", {1, 6, 6}); }),
            "model.architecture: layer 3 'maxpool(2)': expected an image input C x H x W, got a vector of 64");
  EXPECT_EQ(error_of([] { image_model("conv(4, 3), dense(2)", {1, 6, 6}); }),
            "model.architecture: layer 2 'dense(2)': expected a vector input, got 4x4x4 (flatten first)");
  EXPECT_EQ(error_of([] { image_model("conv(4, 6), dense(2)", {1, 6, 6}); }),
            "model.architecture: layer 2 'dense(2)': expected a vector input, got 4x1x1 (flatten first)");
  EXPECT_NO_THROW(image_model("conv(4, 6), conv(2, 1), maxpool(1), globalavgpool, dense(2)", {1, 6, 6}));
}
