// The layer registry and the MLP configuration as a sequence of layers (model/layer.hpp, model/mlp.hpp):
// names select layers and heads, unknown names and bad arguments are refused naming the layer, and the
// MLP shorthand is the sequence DESIGN.md §3.6 writes for it, with its invariant blocks. And the jet
// products the image layers share (model/jet.hpp), against the product rule written out.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "model/jet.hpp"
#include "model/layer.hpp"
#include "support/error_of.hpp"
#include "support/model.hpp"

using namespace eomlab;
using test::error_of;

namespace {

std::vector<std::string> names(const std::vector<ParameterBlock>& blocks) {
  std::vector<std::string> out;
  for (const ParameterBlock& b : blocks) out.push_back(b.name);
  return out;
}

}  // namespace

TEST(Layers, RegisteredNamesMakeLayersAndHeads) {
  EXPECT_EQ(make_layer({"dense", {"7"}}, 5)->n_params(), 5 * 7 + 7);
  EXPECT_EQ(make_layer({"dense", {"7", "weightnorm=on"}}, 5)->text(), "dense(7, weightnorm=on)");
  EXPECT_EQ(make_layer({"dense", {"7", "weightnorm=off"}}, 5)->text(), "dense(7)");
  EXPECT_EQ(make_layer({"layernorm", {}}, 5)->n_outputs(), 5);
  for (const char* activation : {"tanh", "softplus", "gelu", "relu"})
    EXPECT_EQ(make_layer({activation, {}}, 3)->text(), activation);
  EXPECT_EQ(make_loss_head("cross_entropy")->text(), "cross_entropy");
  EXPECT_EQ(make_loss_head("mse")->text(), "mse");
}

TEST(Layers, UnknownNamesAndBadArgumentsAreRefused) {
  EXPECT_EQ(error_of([] { make_layer({"conv", {"3"}}, 5); }),
            "layer 'conv(3)': expected conv(OUT, K[, stride=S][, pad=P]) with whole OUT, K, S > 0 and P >= 0");
  EXPECT_EQ(error_of([] { make_layer({"pool", {"3"}}, 5); }),
            "layer 'pool(3)': expected one of dense | conv | avgpool | maxpool | globalavgpool | flatten | layernorm | tanh | "
            "softplus | gelu | relu | silu | batchnorm | residual");
  EXPECT_EQ(error_of([] { make_loss_head("hinge"); }), "loss 'hinge': expected one of cross_entropy | mse");
  const std::string dense = "expected dense(OUT[, weightnorm=on|off]) with a whole OUT > 0";
  EXPECT_EQ(error_of([] { make_layer({"dense", {}}, 5); }), "layer 'dense': " + dense);
  EXPECT_EQ(error_of([] { make_layer({"dense", {"0"}}, 5); }), "layer 'dense(0)': " + dense);
  EXPECT_EQ(error_of([] { make_layer({"dense", {"7x"}}, 5); }), "layer 'dense(7x)': " + dense);
  EXPECT_EQ(error_of([] { make_layer({"dense", {"x"}}, 5); }), "layer 'dense(x)': " + dense);
  EXPECT_EQ(error_of([] { make_layer({"dense", {"7", "weightnorm=yes"}}, 5); }),
            "layer 'dense(7, weightnorm=yes)': " + dense);
  EXPECT_EQ(error_of([] { make_layer({"tanh", {"1"}}, 5); }), "layer 'tanh(1)': expected no arguments");
  EXPECT_EQ(error_of([] { make_layer({"layernorm", {"1"}}, 5); }), "layer 'layernorm(1)': expected no arguments");
}

TEST(Layers, TheMlpConfigurationIsASequenceOfLayers) {
  const Model plain = test::mlp_model({5, 7, 6, 3}, Activation::gelu, LossKind::cross_entropy);
  EXPECT_EQ(plain.description(), "5 -> dense(7), gelu, dense(6), gelu, dense(3) -> cross_entropy");
  EXPECT_TRUE(plain.scale_invariant_blocks().empty());
  EXPECT_EQ(plain.translation_components().size(), 6u + 1u);  // each column of the last W, and its b

  const Model layer_norm = test::mlp_model({5, 7, 6, 3}, Activation::tanh, LossKind::mse, Normalization::layer);
  EXPECT_EQ(layer_norm.description(), "5 -> dense(7), layernorm, tanh, dense(6), layernorm, tanh, dense(3) -> mse");
  EXPECT_EQ(names(layer_norm.scale_invariant_blocks()), (std::vector<std::string>{"layer0.Wb", "layer1.Wb"}));
  EXPECT_TRUE(layer_norm.translation_components().empty());  // not under mse

  const Model weight_norm = test::mlp_model({5, 2, 3}, Activation::relu, LossKind::cross_entropy, Normalization::weight);
  EXPECT_EQ(weight_norm.description(), "5 -> dense(2, weightnorm=on), relu, dense(3) -> cross_entropy");
  EXPECT_EQ(names(weight_norm.scale_invariant_blocks()), (std::vector<std::string>{"layer0.W[0]", "layer0.W[1]"}));
  EXPECT_EQ(names(weight_norm.blocks()), (std::vector<std::string>{"layer0.W", "layer0.b", "layer1.W", "layer1.b"}));
  EXPECT_EQ(error_of([] { test::mlp_model({5}, Activation::tanh, LossKind::mse); }),
            "model.layers: expected at least two widths");
}

// jet_scale_channels (batchnorm's per-channel products) against the product rule written out: component S
// of a ⊙ c is Σ_{T ⊆ S} a_T c_{S∖T}, the terms in jet_product's order (T from S down), summed as
// x_1 c_1, then fma(x_k, c_k, ·): the bits the layer has always had (one pass per term, `o += x c`
// contracted), for 0 to 3 directions and zero components on either side.
TEST(Jets, ScaleChannelsIsTheProductRuleWithItsBits) {
  for (const Index pixels : {Index(10), Index(1)}) {  // planes, and a vector's features
    const Index channels = 3, samples = 4;
    Rng r(7, rng_stream::test);
    for (int m = 0; m <= max_jet_directions; ++m)
      for (int pattern = 0; pattern < 4; ++pattern) {
        SCOPED_TRACE("directions " + std::to_string(m) + ", pattern " + std::to_string(pattern));
        Jet a, c;
        a.reset(m);
        c.reset(m);
        for (int s = 0; s < (1 << m); ++s) {
          // pattern 0: all components; 1: a's odd ones zero; 2: c's component 1 zero; 3: a has its value alone
          const bool a_zero = s > 0 && ((pattern == 1 && s % 2 == 1) || pattern == 3);
          const bool c_zero = pattern == 2 && s == 1;
          if (!a_zero) {
            Buffer& x = a.set(s, channels * pixels, samples);
            for (Index i = 0; i < x.size(); ++i) x.data()[i] = r.normal();
          }
          if (!c_zero) {
            Buffer& y = c.set(s, channels, 1);
            for (Index i = 0; i < y.size(); ++i) y.data()[i] = r.normal();
          }
        }
        Jet out;
        jet_scale_channels(a, c, pixels, out);
        for (int s = 0; s < (1 << m); ++s) {
          Matrix expected = Matrix::Zero(channels * pixels, samples);
          bool any = false;
          for (int t = s;; t = (t - 1) & s) {
            const int u = s ^ t;
            if (a.nz[static_cast<std::size_t>(t)] && c.nz[static_cast<std::size_t>(u)]) {
              for (Index n = 0; n < samples; ++n)
                for (Index f = 0; f < channels * pixels; ++f) {
                  const double x = a.c[static_cast<std::size_t>(t)](f, n), y = c.c[static_cast<std::size_t>(u)](f / pixels, 0);
                  expected(f, n) = any ? std::fma(x, y, expected(f, n)) : x * y;
                }
              any = true;
            }
            if (t == 0) break;
          }
          ASSERT_EQ(out.nz[static_cast<std::size_t>(s)], any) << "component " << s;
          if (any)
            EXPECT_EQ(std::memcmp(out.c[static_cast<std::size_t>(s)].data(), expected.data(),
                                  sizeof(double) * static_cast<std::size_t>(expected.size())), 0)
                << "component " << s << ", " << pixels << " pixels";
        }
      }
  }
}
