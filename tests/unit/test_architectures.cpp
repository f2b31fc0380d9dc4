// Networks of model.architecture's grammar (DESIGN.md §3.6) beyond the MLP: batchnorm and residual
// blocks. Exact g, Hv and T[u, v] against central finite differences and symmetry; per-channel scale
// invariance before batchnorm; the parser's and the shape checks' messages.
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "diff/objective.hpp"
#include "model/architecture.hpp"
#include "support/error_of.hpp"
#include "support/finite_difference.hpp"
#include "support/mixture.hpp"
#include "support/model.hpp"
#include "support/random_vector.hpp"

using namespace eomlab;
using test::error_of;
using test::random_vector;

namespace {

struct Problem {
  std::unique_ptr<WholeVector> whole;
  std::unique_ptr<ModelObjective> objective;
  Vector theta;
  std::vector<ParameterBlock> invariant;
};

// A Gaussian mixture of `samples` vectors of `features` features, labels or one-hot targets.
std::unique_ptr<Problem> make_problem(const std::string& architecture, Index features, LossKind loss,
                                      Index samples = 24) {
  auto p = std::make_unique<Problem>();
  Model model = test::architecture_model(architecture, features, loss);
  Dataset d = test::mixture(samples, {features, model.n_outputs()}, 3);
  if (loss == LossKind::mse) {
    d.targets = one_hot(d.labels, model.n_outputs());
    d.labels.clear();
  }
  Vector theta = model.initial_parameters(7);
  theta += 0.3 * random_vector(theta.size(), 99);  // γ, β away from 1 and 0
  p->theta = theta;
  p->invariant = model.scale_invariant_blocks();
  p->whole = std::make_unique<WholeVector>(model.n_params());
  p->objective = std::make_unique<ModelObjective>(std::move(model), std::move(d), samples, 0.0, *p->whole);
  return p;
}

const char* const networks[] = {
    "dense(6), batchnorm, tanh, dense(3)",
    "dense(5), batchnorm(affine=off), softplus, residual(dense(5), batchnorm, gelu, dense(5)), dense(3)",
    "batchnorm(eps=0.1), dense(4), tanh, residual(dense(4), tanh), batchnorm, dense(3)",
    "batchnorm(affine=off, eps=0.1), softplus, dense(5), tanh, dense(3)",  // parameterless first
};

class Architectures : public ::testing::TestWithParam<std::tuple<const char*, LossKind>> {};

}  // namespace

TEST_P(Architectures, DerivativesMatchCentralDifferences) {
  const auto [architecture, loss] = GetParam();
  auto p = make_problem(architecture, 4, loss);
  Objective& f = *p->objective;
  Vector g;
  f.value_and_gradient(p->theta, g);
  EXPECT_LT(test::relative_error(g, test::fd_gradient(f, p->theta)), 1e-6);
  const Vector u = random_vector(p->theta.size(), 1), v = random_vector(p->theta.size(), 2);
  Vector hv, tuv, tvu, hu, tuu, tuu_alone;
  f.hessian_vector(p->theta, v, hv);
  EXPECT_LT(test::relative_error(hv, test::fd_hessian_vector(f, p->theta, v)), 1e-6);
  f.third_order(p->theta, u, v, tuv);
  f.third_order(p->theta, v, u, tvu);
  EXPECT_LT(test::relative_error(tuv, test::fd_third_order(f, p->theta, u, v)), 1e-6);
  EXPECT_LT(test::relative_error(tvu, tuv), 1e-12);
  f.hessian_and_third_order(p->theta, u, hu, tuu);
  f.third_order(p->theta, u, u, tuu_alone);
  f.hessian_vector(p->theta, u, hv);
  EXPECT_LT(test::relative_error(hu, hv), 1e-13);
  EXPECT_LT(test::relative_error(tuu, tuu_alone), 1e-13);
}

INSTANTIATE_TEST_SUITE_P(Networks, Architectures,
                         ::testing::Combine(::testing::ValuesIn(networks),
                                            ::testing::Values(LossKind::cross_entropy, LossKind::mse)));

// Before batchnorm (eps 0) each row of W is scale-invariant: scaling it leaves L, the gradient is
// orthogonal to it, and the row's bias gets no gradient.
TEST(Architectures, RowsBeforeBatchnormAreScaleInvariant) {
  auto p = make_problem("dense(6), batchnorm, tanh, dense(3)", 4, LossKind::cross_entropy);
  ASSERT_EQ(p->invariant.size(), 6u);
  EXPECT_EQ(p->invariant[2].name, "layer0.W[2]");
  Vector g;
  const double loss = p->objective->value_and_gradient(p->theta, g);
  EXPECT_LT(g.segment(24, 6).norm(), 1e-15 * g.norm() + 1e-16);  // b of the first layer
  for (const ParameterBlock& b : p->invariant) {
    EXPECT_LT(std::abs(g.segment(b.offset, b.size).dot(p->theta.segment(b.offset, b.size))), 1e-14);
    Vector scaled = p->theta;
    scaled.segment(b.offset, b.size) *= 3.7;
    EXPECT_NEAR(p->objective->value(scaled), loss, 1e-13 * loss);
  }
  // With eps > 0 the invariance is gone, and no block is claimed.
  EXPECT_TRUE(make_problem("dense(6), batchnorm(eps=1e-5), tanh, dense(3)", 4, LossKind::mse)->invariant.empty());
}

// Each translation component v (a sum of parameters) is an exact symmetry: L(θ + t v) = L(θ) and ⟨v, g⟩ = 0
// (no weight decay). Found by a review: a weightnorm output layer listed its W column sums, which are not.
TEST(Architectures, TranslationComponentsAreSymmetries) {
  const struct {
    const char* architecture;
    LossKind loss;
    std::size_t components;
  } cases[] = {{"dense(6), batchnorm, tanh, dense(3)", LossKind::cross_entropy, 6 + 1},
               {"dense(5), tanh, dense(3, weightnorm=on)", LossKind::cross_entropy, 1},  // the bias sum alone
               {"dense(5), tanh, dense(3), layernorm", LossKind::mse, 5 + 1},            // layernorm takes the mean out
               {"dense(5), tanh, dense(3), layernorm", LossKind::cross_entropy, 5 + 1},
               {"dense(5), tanh, dense(3)", LossKind::mse, 0}};
  for (const auto& c : cases) {
    auto p = make_problem(c.architecture, 4, c.loss);
    const std::vector<ParameterSum> sums = p->objective->model().translation_components();
    ASSERT_EQ(sums.size(), c.components) << c.architecture;
    Vector g;
    const double loss = p->objective->value_and_gradient(p->theta, g);
    for (const ParameterSum& sum : sums) {
      Vector v = Vector::Zero(p->theta.size());
      for (Index i = 0; i < sum.count; ++i) v[sum.offset + i * sum.stride] = 1.0;
      EXPECT_LT(std::abs(v.dot(g)), 1e-14 * g.norm()) << c.architecture << " " << sum.name;
      EXPECT_NEAR(p->objective->value(p->theta + 0.7 * v), loss, 1e-13 * loss) << c.architecture << " " << sum.name;
    }
  }
}

TEST(Architectures, ParserSplitsLayersAndArguments) {
  const auto specs = parse_architecture(" conv(32, 3,pad=1), tanh ,residual(dense(4), batchnorm(affine=off)) ");
  ASSERT_EQ(specs.size(), 3u);
  EXPECT_EQ(specs[0].text(), "conv(32, 3, pad=1)");
  EXPECT_EQ(specs[1].text(), "tanh");
  EXPECT_EQ(specs[2].args, (std::vector<std::string>{"dense(4)", "batchnorm(affine=off)"}));
  // Spaces around a keyword argument's '=' (found by a review: "pad = 1" was refused, spaces around commas not).
  const auto spaced = parse_architecture("conv(2, 3 , pad = 1 ,stride =2), batchnorm(affine= off, eps =0.5), "
                                         "residual(conv(2, 3, pad = 1))");
  EXPECT_EQ(spaced[0].args, (std::vector<std::string>{"2", "3", "pad=1", "stride=2"}));
  EXPECT_EQ(spaced[1].args, (std::vector<std::string>{"affine=off", "eps=0.5"}));
  EXPECT_EQ(spaced[2].args, (std::vector<std::string>{"conv(2, 3, pad = 1)"}));  // its layer's own parse spaces it
  EXPECT_EQ(parse_layer(spaced[2].args[0]).args, (std::vector<std::string>{"2", "3", "pad=1"}));
  EXPECT_EQ(test::architecture_model("dense(5), batchnorm(affine = off, eps = 0.5), dense(2)", 3, LossKind::cross_entropy)
                .architecture(),
            "dense(5), batchnorm(affine=off, eps=0.5), dense(2)");
  EXPECT_EQ(error_of([] { parse_architecture("dense(4), tanh("); }), "expected balanced parentheses, got 'dense(4), tanh('");
  EXPECT_EQ(error_of([] { parse_architecture("dense(4),, tanh"); }), "layer 2: expected NAME or NAME(ARGS), got ''");
  EXPECT_EQ(error_of([] { parse_architecture("dense()"); }), "layer 1: expected NAME or NAME(ARGS), got 'dense()'");
  EXPECT_EQ(error_of([] { parse_architecture("dense(4)x"); }), "layer 1: expected NAME or NAME(ARGS), got 'dense(4)x'");
  // A layer whose parentheses close before its end is quoted whole.
  EXPECT_EQ(error_of([] { parse_architecture("tanh, dense(3) dense(3)"); }),
            "layer 2: expected NAME or NAME(ARGS), got 'dense(3) dense(3)'");
  EXPECT_EQ(error_of([] { parse_architecture("residual(tanh)(x)"); }),
            "layer 1: expected NAME or NAME(ARGS), got 'residual(tanh)(x)'");
  EXPECT_EQ(error_of([] { parse_architecture("  "); }), "expected layers, got only blanks");
  // Nesting is bounded (3000 nested residuals exhausted the stack).
  std::string nested = "tanh";
  for (int i = 0; i < 64; ++i) nested = "residual(" + nested + ")";
  EXPECT_EQ(parse_architecture(nested).size(), 1u);
  EXPECT_EQ(error_of([&] { parse_architecture("residual(" + nested + ")"); }),
            "expected parentheses nested at most 64 deep, got more");
}

TEST(Architectures, BadArchitecturesNameTheLayer) {
  const auto error = [](const std::string& architecture) {
    return error_of([&] { test::architecture_model(architecture, 4, LossKind::mse); });
  };
  const std::string unknown = error("dense(4), softmax, dense(2)");
  EXPECT_EQ(unknown.rfind("model.architecture: layer 2 'softmax': expected one of dense | conv | ", 0), 0u) << unknown;
  EXPECT_NE(unknown.find(" | batchnorm | residual"), std::string::npos) << unknown;
  EXPECT_EQ(error("dense(4), residual(dense(3)), dense(2)"),
            "model.architecture: layer 2 'residual(dense(3))': expected inner layers that keep the shape 4, got 3");
  EXPECT_EQ(error("dense(4), residual(tanh, dense(0))"),
            "model.architecture: layer 2 'residual(tanh, dense(0))': layer 2 'dense(0)': expected dense(OUT[, "
            "weightnorm=on|off]) with a whole OUT > 0");
  EXPECT_EQ(error("batchnorm(eps=-1)"),
            "model.architecture: layer 1 'batchnorm(eps=-1)': expected batchnorm[(affine=on|off, eps=E)] with a finite E >= 0");
  // Numbers are decimal: no hexadecimal, no sign on a size.
  EXPECT_EQ(error("batchnorm(eps=0x10)"),
            "model.architecture: layer 1 'batchnorm(eps=0x10)': expected batchnorm[(affine=on|off, eps=E)] with a finite E >= 0");
  EXPECT_EQ(error("dense(+4)"),
            "model.architecture: layer 1 'dense(+4)': expected dense(OUT[, weightnorm=on|off]) with a whole OUT > 0");
  EXPECT_EQ(error("dense(0x4)").substr(0, 44), "model.architecture: layer 1 'dense(0x4)': ex");
  // An option given twice (the last one used to win).
  for (const char* twice : {"batchnorm(eps=1e-5, eps=0.001)", "batchnorm(affine=off, affine=on)"})
    EXPECT_EQ(error(twice), std::string("model.architecture: layer 1 '") + twice +
                                "': expected batchnorm[(affine=on|off, eps=E)] with a finite E >= 0");
  // layernorm over one feature is 0/0 for every sample (found by a review: the Python module gave NaN).
  EXPECT_EQ(error("dense(1), layernorm, dense(2)"),
            "model.architecture: layer 2 'layernorm': expected an input of at least 2 features, got 1");
  EXPECT_EQ(error("dense(4), batchnorm(momentum=0.1)").substr(0, 60),
            "model.architecture: layer 2 'batchnorm(momentum=0.1)': expec");
}

TEST(Architectures, ResolvedTextAndBlocks) {
  const Model m = test::architecture_model("dense(5), batchnorm(eps=1e-05), residual(dense(5), batchnorm(affine=off)), dense(2)",
                                           3, LossKind::cross_entropy);
  EXPECT_EQ(m.architecture(), "dense(5), batchnorm(eps=1e-05), residual(dense(5), batchnorm(affine=off)), dense(2)");
  EXPECT_EQ(m.description(), "3 -> " + m.architecture() + " -> cross_entropy");
  std::vector<std::string> names;
  for (const ParameterBlock& b : m.blocks()) names.push_back(b.name);
  EXPECT_EQ(names, (std::vector<std::string>{"layer0.W", "layer0.b", "layer1.gamma", "layer1.beta", "layer2.0.W",
                                             "layer2.0.b", "layer3.W", "layer3.b"}));
  EXPECT_EQ(m.n_params(), 3 * 5 + 5 + 10 + 30 + 12);
  EXPECT_TRUE(m.couples_samples());
  // The residual's inner dense is followed by a scale-invariant batchnorm: its rows are invariant.
  EXPECT_EQ(m.scale_invariant_blocks().size(), 5u);
  EXPECT_EQ(m.scale_invariant_blocks()[0].name, "layer2.0.W[0]");
}

// A batch whose jets exceed the budget is evaluated in chunks of samples: the loss and every derivative
// equal the sums over separately evaluated thirds of the batch (1e-13).
TEST(Architectures, LargeBatchesAreEvaluatedInChunks) {
  const Model model = test::architecture_model("conv(32, 3, pad=1), tanh, flatten, dense(3)", Shape(1, 28, 28),
                                               LossKind::cross_entropy);
  const Index n = 3 * 150;
  ASSERT_LT(model.samples_per_pass(0), n);
  ASSERT_LT(model.samples_per_pass(2), model.samples_per_pass(0));
  DataConfig data;
  data.n_samples = n;
  data.n_features = 784;
  data.n_classes = 3;
  data.shape = Shape(1, 28, 28);
  const Dataset d = make_synthetic(data, ModelConfig{});
  const Vector theta = model.initial_parameters(1), u = random_vector(theta.size(), 3), v = random_vector(theta.size(), 4);
  const double scale = 1.0 / static_cast<double>(n);
  Vector g, hv, tuv, part, sum_g = Vector::Zero(theta.size()), sum_hv = sum_g, sum_t = sum_g;
  const double loss = model.loss_and_gradient(theta, d, scale, g);
  model.hessian_vector(theta, v, d, scale, hv);
  model.third_order(theta, u, v, d, scale, tuv);
  double sum_loss = 0;
  for (int third = 0; third < 3; ++third) {
    const Dataset p = shard(d, third, 3);
    sum_loss += model.loss_and_gradient(theta, p, scale, part);
    sum_g += part;
    model.hessian_vector(theta, v, p, scale, part);
    sum_hv += part;
    model.third_order(theta, u, v, p, scale, part);
    sum_t += part;
  }
  EXPECT_NEAR(loss, sum_loss, 1e-13 * loss);
  EXPECT_LT(test::relative_error(g, sum_g), 1e-13);
  EXPECT_LT(test::relative_error(hv, sum_hv), 1e-13);
  EXPECT_LT(test::relative_error(tuv, sum_t), 1e-13);
}

// What a pass holds per sample and jet component (the memory estimate's count), by hand from the layers:
// a conv, tanh and avgpool(2) fused by planes keep tanh's slope and the pool's output alone; unfused, the
// conv's output, tanh's output and slope, maxpool's output and arg max; flatten its copy, dense(3) its
// output, and the δ jet and its spare of the largest output a δ is formed for. An adversarial review
// measured peaks of unfused nets at up to 2.2x the estimate, which counted every layer's output alike
// (activation_size).
TEST(Architectures, HeldSizeCountsWhatTheLayersKeep) {
  const auto held = [](const std::string& text) {
    const HeldSize h = test::architecture_model(text, Shape(3, 32, 32), LossKind::cross_entropy).held_size();
    EXPECT_EQ(h.value_only, 0) << text;  // a conv first: every layer's jets have directional parts
    return h.every_component;
  };
  const Index conv = 4 * 32 * 32, pooled = 4 * 16 * 16;
  EXPECT_EQ(held("conv(4, 3, pad=1), tanh, avgpool(2), flatten, dense(3)"), conv + pooled + pooled + 3 + 2 * pooled);
  EXPECT_EQ(held("conv(4, 3, pad=1), tanh, maxpool(2), flatten, dense(3)"),
            conv + 2 * conv + 2 * pooled + pooled + 3 + 2 * conv);
  // layernorm between conv and tanh: nothing fuses; it keeps ẑ, c and the scratch c².
  EXPECT_EQ(held("conv(4, 3, pad=1), layernorm, tanh, avgpool(2), flatten, dense(3)"),
            conv + 3 * conv + 2 * conv + pooled + pooled + 3 + 2 * conv);
  // A residual block: its output and inner δ, and its inner sequence's count (with its own δ pair).
  EXPECT_EQ(held("conv(4, 3, pad=1), residual(conv(4, 3, pad=1), tanh), flatten, dense(3)"),
            conv + (2 * conv + (conv + 2 * conv + 2 * conv)) + conv + 3 + 2 * conv);
  // Layers before the first with parameters hold a value alone, and no δ is formed at their outputs.
  const HeldSize first = test::architecture_model("avgpool(4), flatten, dense(3)", Shape(3, 32, 32),
                                                  LossKind::cross_entropy).held_size();
  EXPECT_EQ(first.value_only, 3 * 8 * 8 * 2);
  EXPECT_EQ(first.every_component, 3 + 2 * 3);
  // The activation size, which sets the chunks, is unchanged: every layer's output once.
  EXPECT_EQ(test::architecture_model("conv(4, 3, pad=1), tanh, maxpool(2), flatten, dense(3)", Shape(3, 32, 32),
                                     LossKind::cross_entropy).activation_size(),
            conv + conv + pooled + pooled + 3);
}
