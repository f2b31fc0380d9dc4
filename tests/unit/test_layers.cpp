// The layer registry and the MLP configuration as a sequence of layers (model/layer.hpp, model/mlp.hpp):
// names select layers and heads, unknown names and bad arguments are refused naming the layer, and the
// MLP shorthand is the sequence DESIGN.md §3.6 writes for it, with its invariant blocks.
#include <gtest/gtest.h>

#include "core/error.hpp"
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
