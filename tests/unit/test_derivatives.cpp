// Exact gradient and HVP of the MLP objective against central finite differences, for every
// activation and loss, with and without weight decay; symmetry of the Hessian.
#include <gtest/gtest.h>

#include <tuple>

#include "core/error.hpp"
#include "diff/objective.hpp"
#include "support/finite_difference.hpp"
#include "support/mixture.hpp"
#include "support/random_vector.hpp"
#include "support/model.hpp"

using namespace eomlab;
using test::random_vector;

namespace {

struct Problem {
  std::unique_ptr<WholeVector> whole;
  std::unique_ptr<ModelObjective> objective;
  Vector theta;
};

std::unique_ptr<Problem> make_problem(Activation act, LossKind loss, double wd, std::vector<Index> widths = {5, 7, 6, 3},
                                      Normalization norm = Normalization::none) {
  auto p = std::make_unique<Problem>();
  Dataset d = test::teacher(40, widths, act, loss, 11);
  Model mlp = test::mlp_model(widths, act, loss, norm);
  p->theta = mlp.initial_parameters(5);
  const Index n = d.n_samples();
  p->whole = std::make_unique<WholeVector>(mlp.n_params());
  p->objective = std::make_unique<ModelObjective>(std::move(mlp), std::move(d), n, wd, *p->whole);
  return p;
}

using Case = std::tuple<Activation, LossKind, double>;

class Derivatives : public ::testing::TestWithParam<Case> {};

}  // namespace

TEST_P(Derivatives, GradientMatchesCentralDifferences) {
  const auto [act, loss, wd] = GetParam();
  auto p = make_problem(act, loss, wd);
  Vector g;
  const double value = p->objective->value_and_gradient(p->theta, g);
  EXPECT_DOUBLE_EQ(value, p->objective->value(p->theta));
  const Vector fd = test::fd_gradient(*p->objective, p->theta);
  EXPECT_LT(test::relative_error(g, fd), 1e-6);
}

TEST_P(Derivatives, HessianVectorMatchesCentralDifferences) {
  const auto [act, loss, wd] = GetParam();
  auto p = make_problem(act, loss, wd);
  for (std::uint64_t s = 0; s < 3; ++s) {
    const Vector v = random_vector(p->theta.size(), 100 + s);
    Vector hv;
    p->objective->hessian_vector(p->theta, v, hv);
    const Vector fd = test::fd_hessian_vector(*p->objective, p->theta, v);
    EXPECT_LT(test::relative_error(hv, fd), 1e-6) << "direction " << s;
  }
}

TEST_P(Derivatives, HessianIsSymmetric) {
  const auto [act, loss, wd] = GetParam();
  auto p = make_problem(act, loss, wd);
  const Vector u = random_vector(p->theta.size(), 1), v = random_vector(p->theta.size(), 2);
  Vector hu, hv;
  p->objective->hessian_vector(p->theta, u, hu);
  p->objective->hessian_vector(p->theta, v, hv);
  EXPECT_NEAR(u.dot(hv), v.dot(hu), 1e-12 * (std::abs(u.dot(hv)) + 1e-300) + 1e-14);
}

TEST_P(Derivatives, HessianVectorIsLinearInDirection) {
  const auto [act, loss, wd] = GetParam();
  auto p = make_problem(act, loss, wd);
  const Vector u = random_vector(p->theta.size(), 3), v = random_vector(p->theta.size(), 4);
  Vector hu, hv, hw;
  p->objective->hessian_vector(p->theta, u, hu);
  p->objective->hessian_vector(p->theta, v, hv);
  p->objective->hessian_vector(p->theta, 2.0 * u - 3.0 * v, hw);
  EXPECT_LT(test::relative_error(hw, 2.0 * hu - 3.0 * hv), 1e-12);
}

TEST_P(Derivatives, ThirdOrderMatchesDifferencesOfHvpsAndIsSymmetric) {
  const auto [act, loss, wd] = GetParam();
  auto p = make_problem(act, loss, wd);
  const Vector u = random_vector(p->theta.size(), 5), v = random_vector(p->theta.size(), 6);
  Vector tuv, tvu, tuu;
  p->objective->third_order(p->theta, u, v, tuv);
  p->objective->third_order(p->theta, v, u, tvu);
  p->objective->third_order(p->theta, u, u, tuu);
  EXPECT_LT(test::relative_error(tuv, test::fd_third_order(*p->objective, p->theta, u, v)), 1e-6);
  EXPECT_LT(test::relative_error(tuu, test::fd_third_order(*p->objective, p->theta, u, u)), 1e-6);
  EXPECT_LT(test::relative_error(tvu, tuv), 1e-12);
  // Full symmetry of ∇³L: wᵀT[u, v] = uᵀT[w, v].
  const Vector w = random_vector(p->theta.size(), 7);
  Vector twv;
  p->objective->third_order(p->theta, w, v, twv);
  EXPECT_NEAR(w.dot(tuv), u.dot(twv), 1e-11 * std::abs(w.dot(tuv)));
}

INSTANTIATE_TEST_SUITE_P(
    AllActivationsLossesWeightDecay, Derivatives,
    ::testing::Combine(::testing::Values(Activation::tanh, Activation::softplus, Activation::gelu, Activation::relu),
                       ::testing::Values(LossKind::cross_entropy, LossKind::mse), ::testing::Values(0.0, 0.03)),
    [](const ::testing::TestParamInfo<Case>& param_info) {
      return std::string(to_string(std::get<0>(param_info.param))) + "_" + to_string(std::get<1>(param_info.param)) +
             (std::get<2>(param_info.param) > 0 ? "_wd" : "_nowd");
    });

TEST(Derivatives, ShardSumsEqualTheFullBatch) {
  // The loss and derivatives are sums over samples: three shards scaled by 1/N add up to the full set.
  auto p = make_problem(Activation::tanh, LossKind::cross_entropy, 0.0);
  ModelConfig model;
  model.layers = {5, 7, 6, 3};
  const Dataset full = test::mixture(31, model.layers, 2);
  Model mlp = test::mlp_model(model.layers, Activation::tanh, LossKind::cross_entropy);
  const Vector theta = mlp.initial_parameters(1), v = random_vector(theta.size(), 9);
  const double scale = 1.0 / 31;
  Vector g_full, hv_full, g_part, hv_part, g_sum = Vector::Zero(theta.size()), hv_sum = Vector::Zero(theta.size());
  const double l_full = mlp.loss_and_gradient(theta, full, scale, g_full);
  mlp.hessian_vector(theta, v, full, scale, hv_full);
  double l_sum = 0;
  for (int r = 0; r < 3; ++r) {
    const Dataset part = shard(full, r, 3);
    l_sum += mlp.loss_and_gradient(theta, part, scale, g_part);
    g_sum += g_part;
    mlp.hessian_vector(theta, v, part, scale, hv_part);
    hv_sum += hv_part;
  }
  EXPECT_NEAR(l_sum, l_full, 1e-14);
  EXPECT_LT(test::relative_error(g_sum, g_full), 1e-13);
  EXPECT_LT(test::relative_error(hv_sum, hv_full), 1e-13);
}

TEST(Derivatives, LayoutIsLayerByLayerWeightsRowMajorThenBias) {
  Model mlp = test::mlp_model({3, 4, 2}, Activation::tanh, LossKind::mse);
  ASSERT_EQ(mlp.n_params(), 3 * 4 + 4 + 4 * 2 + 2);
  EXPECT_EQ(mlp.description(), "3 -> dense(4), tanh, dense(2) -> mse");
  const auto blocks = mlp.blocks();
  ASSERT_EQ(blocks.size(), 4u);
  EXPECT_EQ(blocks[0].name, "layer0.W");
  EXPECT_EQ(blocks[1].offset, 12);
  EXPECT_EQ(blocks[2].offset, 16);
  EXPECT_EQ(blocks[3].offset, 24);
  // θ with only W0[1][2] = 1 (row-major index 1*3+2) makes output row 1 of layer 0 read input 2.
  Vector theta = Vector::Zero(mlp.n_params());
  theta[1 * 3 + 2] = 1.0;   // W0(1, 2)
  theta[16 + 0 * 4 + 1] = 1.0;  // W1(0, 1)
  Matrix x = Matrix::Zero(3, 1);
  x(2, 0) = 0.5;
  const Matrix z = mlp.outputs(theta, x);
  EXPECT_NEAR(z(0, 0), std::tanh(0.5), 1e-15);
  EXPECT_EQ(z(1, 0), 0.0);
}

namespace {

class Normalized : public ::testing::TestWithParam<std::tuple<Normalization, Activation>> {};

}  // namespace

TEST_P(Normalized, AllDerivativesMatchFiniteDifferences) {
  const auto [norm, act] = GetParam();
  auto p = make_problem(act, LossKind::cross_entropy, 0.01, {5, 7, 6, 3}, norm);
  Vector g, hv, t;
  p->objective->value_and_gradient(p->theta, g);
  EXPECT_LT(test::relative_error(g, test::fd_gradient(*p->objective, p->theta)), 1e-6);
  const Vector u = random_vector(p->theta.size(), 8), v = random_vector(p->theta.size(), 9);
  p->objective->hessian_vector(p->theta, v, hv);
  EXPECT_LT(test::relative_error(hv, test::fd_hessian_vector(*p->objective, p->theta, v)), 1e-6);
  p->objective->third_order(p->theta, u, v, t);
  EXPECT_LT(test::relative_error(t, test::fd_third_order(*p->objective, p->theta, u, v)), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(LayerAndWeight, Normalized,
                         ::testing::Combine(::testing::Values(Normalization::layer, Normalization::weight),
                                            ::testing::Values(Activation::tanh, Activation::gelu, Activation::softplus)),
                         [](const ::testing::TestParamInfo<std::tuple<Normalization, Activation>>& param_info) {
                           return std::string(to_string(std::get<0>(param_info.param))) + "_" +
                                  to_string(std::get<1>(param_info.param));
                         });

namespace {

// θ̂_A: the block [offset, offset + size) of θ, zero elsewhere.
Vector padded_block(const Vector& x, Index offset, Index size) {
  Vector out = Vector::Zero(x.size());
  out.segment(offset, size) = x.segment(offset, size);
  return out;
}

// DESIGN.md §1.4, scale-invariant block A: θ_A·g_A = 0, H θ̂_A = −ĝ_A, T[θ̂_A, u] = −(Hu)^_A − H û_A.
void expect_scale_invariance_identities(Objective& f, const Vector& theta, Index offset, Index size) {
  Vector g, h_theta, hu, h_ua, t;
  f.value_and_gradient(theta, g);
  const Vector theta_a = padded_block(theta, offset, size);
  EXPECT_NEAR(theta_a.dot(g), 0.0, 1e-13 * theta_a.norm() * g.norm());
  f.hessian_vector(theta, theta_a, h_theta);
  EXPECT_LT((h_theta + padded_block(g, offset, size)).norm(), 1e-12 * g.norm());
  const Vector u = random_vector(theta.size(), 21);
  f.hessian_vector(theta, u, hu);
  f.hessian_vector(theta, padded_block(u, offset, size), h_ua);
  f.third_order(theta, theta_a, u, t);
  const Vector expected = -padded_block(hu, offset, size) - h_ua;
  EXPECT_LT((t - expected).norm(), 1e-11 * expected.norm());
}

// Layer i's W and b (blocks 2i and 2i + 1 of the MLP's layout).
struct DenseBlocks {
  ParameterBlock w, b;
};
std::vector<DenseBlocks> dense_layers(const Model& model) {
  const auto blocks = model.blocks();
  std::vector<DenseBlocks> out;
  for (std::size_t i = 0; i + 1 < blocks.size(); i += 2) out.push_back({blocks[i], blocks[i + 1]});
  return out;
}

}  // namespace

TEST(Normalized, LayerNormMakesEachHiddenLayersWAndBJointlyScaleInvariant) {
  auto p = make_problem(Activation::tanh, LossKind::cross_entropy, 0.0, {5, 7, 6, 3}, Normalization::layer);
  const auto layers = dense_layers(p->objective->model());
  ASSERT_EQ(layers.size(), 3u);
  for (std::size_t i = 0; i + 1 < layers.size(); ++i)
    expect_scale_invariance_identities(*p->objective, p->theta, layers[i].w.offset,
                                       layers[i].w.size + layers[i].b.size);
  // Loss unchanged by scaling the block.
  Vector scaled = p->theta;
  scaled.segment(layers[0].w.offset, layers[0].w.size + layers[0].b.size) *= 3.7;
  EXPECT_NEAR(p->objective->value(scaled), p->objective->value(p->theta), 1e-14);
}

TEST(Normalized, WeightNormMakesEachHiddenNeuronsRowScaleInvariant) {
  auto p = make_problem(Activation::gelu, LossKind::mse, 0.0, {5, 7, 6, 3}, Normalization::weight);
  const auto layers = dense_layers(p->objective->model());
  ASSERT_EQ(layers.size(), 3u);
  for (std::size_t i = 0; i + 1 < layers.size(); ++i)
    for (Index row : {Index{0}, layers[i].w.rows - 1})
      expect_scale_invariance_identities(*p->objective, p->theta, layers[i].w.offset + row * layers[i].w.cols,
                                         layers[i].w.cols);
}

TEST(Derivatives, OutputLayerIsTranslationInvariantUnderCrossEntropy) {
  // v = adding a constant to every class's bias: v·g = 0, Hv = 0, T[v, u] = 0 (DESIGN.md §1.4).
  auto p = make_problem(Activation::tanh, LossKind::cross_entropy, 0.0);
  const ParameterBlock out = dense_layers(p->objective->model()).back().b;
  Vector v = Vector::Zero(p->theta.size());
  v.segment(out.offset, out.size).setOnes();
  Vector g, hv, t;
  p->objective->value_and_gradient(p->theta, g);
  p->objective->hessian_vector(p->theta, v, hv);
  p->objective->third_order(p->theta, v, random_vector(p->theta.size(), 3), t);
  EXPECT_NEAR(v.dot(g), 0.0, 1e-15);
  EXPECT_LT(hv.norm(), 1e-14);
  EXPECT_LT(t.norm(), 1e-13);
}

TEST(Derivatives, FusedHessianAndThirdOrderEqualSeparateCalls) {
  for (Normalization norm : {Normalization::none, Normalization::layer, Normalization::weight}) {
    auto p = make_problem(Activation::gelu, LossKind::cross_entropy, 0.02, {5, 7, 6, 3}, norm);
    const Vector u = random_vector(p->theta.size(), 31);
    Vector hu, tuu, hu_fused, tuu_fused;
    p->objective->hessian_vector(p->theta, u, hu);
    p->objective->third_order(p->theta, u, u, tuu);
    p->objective->hessian_and_third_order(p->theta, u, hu_fused, tuu_fused);
    EXPECT_LT(test::relative_error(hu_fused, hu), 1e-13) << to_string(norm);
    EXPECT_LT(test::relative_error(tuu_fused, tuu), 1e-13) << to_string(norm);
  }
}

TEST(Derivatives, AnObjectiveRefusesDataThatDoesNotFitItsModelsOutputs) {
  // Targets narrower than the outputs were subtracted from them unchecked on the jet path (wrong numbers).
  const std::vector<Index> widths = {5, 7, 3};
  for (LossKind loss : {LossKind::mse, LossKind::cross_entropy}) {
    Dataset d = test::teacher(12, widths, Activation::tanh, loss, 3);
    if (loss == LossKind::mse)
      d.targets.conservativeResize(2, d.targets.cols());
    else
      d.labels[4] = 3;
    Model mlp = test::mlp_model(widths, Activation::tanh, loss);
    WholeVector whole(mlp.n_params());
    const std::string expected = loss == LossKind::mse
                                     ? "ModelObjective: expected targets as wide as the model's 3 outputs, got 2"
                                     : "ModelObjective: expected labels in [0, 3), got 3";
    try {
      ModelObjective objective(std::move(mlp), std::move(d), 12, 0.0, whole);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), expected);
    }
  }
}
