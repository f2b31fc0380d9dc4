// The fast path of the MLP (model/dense_path.hpp) against the jet path that defines the results: loss,
// gradient and HVP for every activation and loss; the HVP that reuses a gradient's forward pass gives the
// same bits as a fresh one, and MlpObjective reuses it only at the same θ.
#include <gtest/gtest.h>

#include <tuple>

#include "core/rng.hpp"
#include "data/synthetic.hpp"
#include "diff/objective.hpp"

using namespace eomlab;

namespace {

const std::vector<Index> widths{6, 9, 8, 4};

Vector random_vector(Index n, std::uint64_t seed) {
  Rng r(seed, rng_stream::test);
  Vector v(n);
  for (Index i = 0; i < n; ++i) v[i] = r.normal();
  return v;
}

Dataset data_for(Activation act, LossKind loss) {
  DataConfig data;
  data.source = "teacher";
  data.n_samples = 30;
  data.n_features = widths.front();
  data.n_classes = widths.back();
  data.noise = 0.3;
  data.seed = 4;
  ModelConfig model;
  model.layers = widths;
  model.activation = act;
  model.loss = loss;
  return make_synthetic(data, model);
}

double relative(const Vector& a, const Vector& b) { return (a - b).norm() / b.norm(); }

using Case = std::tuple<Activation, LossKind>;
class DensePathAgainstJets : public ::testing::TestWithParam<Case> {};

}  // namespace

TEST_P(DensePathAgainstJets, LossGradientAndHvpAgree) {
  const auto [act, loss] = GetParam();
  const Dataset d = data_for(act, loss);
  Mlp fast(widths, act, loss), reference(widths, act, loss);
  reference.use_reference_path(true);
  const Vector theta = fast.initial_parameters(3), v = random_vector(fast.n_params(), 8);
  const double scale = 1.0 / 30;
  Vector g_fast, g_ref, h_fast, h_ref;
  const double l_fast = fast.loss_and_gradient(theta, d, scale, g_fast);
  const double l_ref = reference.loss_and_gradient(theta, d, scale, g_ref);
  EXPECT_NEAR(l_fast, l_ref, 1e-14 * std::abs(l_ref));
  EXPECT_NEAR(fast.loss_value(theta, d, scale), l_ref, 1e-14 * std::abs(l_ref));
  EXPECT_LT(relative(g_fast, g_ref), 1e-13);
  fast.hessian_vector(theta, v, d, scale, h_fast);
  reference.hessian_vector(theta, v, d, scale, h_ref);
  EXPECT_LT(relative(h_fast, h_ref), 1e-13);
}

INSTANTIATE_TEST_SUITE_P(All, DensePathAgainstJets,
                         ::testing::Combine(::testing::Values(Activation::tanh, Activation::softplus, Activation::gelu,
                                                              Activation::relu),
                                            ::testing::Values(LossKind::cross_entropy, LossKind::mse)));

TEST(DensePath, ReusedForwardPassGivesTheSameBits) {
  const Dataset d = data_for(Activation::tanh, LossKind::cross_entropy);
  Mlp mlp(widths, Activation::tanh, LossKind::cross_entropy);
  const Vector theta = mlp.initial_parameters(3), v = random_vector(mlp.n_params(), 8);
  Vector g, fresh, reused, after_loss;
  mlp.hessian_vector(theta, v, d, 0.1, fresh);
  mlp.loss_and_gradient(theta, d, 0.1, g);
  mlp.hessian_vector(theta, v, d, 0.1, reused, true);
  EXPECT_EQ(fresh, reused);
  // A loss-only evaluation keeps no backward pass; same_point must then not reuse a stale one.
  mlp.loss_and_gradient(theta + v, d, 0.1, g);
  mlp.loss_value(theta, d, 0.1);
  mlp.hessian_vector(theta, v, d, 0.1, after_loss, true);
  EXPECT_EQ(fresh, after_loss);
}

TEST(DensePath, ObjectiveReusesTheForwardPassOnlyAtTheSamePoint) {
  const Dataset d = data_for(Activation::tanh, LossKind::cross_entropy);
  Mlp mlp(widths, Activation::tanh, LossKind::cross_entropy);
  const Vector theta = mlp.initial_parameters(3), v = random_vector(mlp.n_params(), 8);
  const Vector other = theta + 0.1 * random_vector(mlp.n_params(), 9);
  Mlp reference(widths, Activation::tanh, LossKind::cross_entropy);
  reference.use_reference_path(true);
  WholeVector whole(mlp.n_params());
  MlpObjective objective(std::move(mlp), d, d.n_samples(), 0.01, whole);
  Vector g, hv, expected;
  // A gradient at one point, then an HVP at the same or at another one.
  const std::pair<const Vector*, const Vector*> sequence[] = {{&theta, &theta}, {&theta, &other}, {&other, &other},
                                                              {&other, &theta}};
  for (const auto& [gradient_point, hvp_point] : sequence) {
    objective.value_and_gradient(*gradient_point, g);
    objective.hessian_vector(*hvp_point, v, hv);
    reference.hessian_vector(*hvp_point, v, d, 1.0 / static_cast<double>(d.n_samples()), expected);
    expected += 0.01 * v;
    EXPECT_LT(relative(hv, expected), 1e-13);
  }
}

TEST(DensePath, ObjectiveDoesNotReuseAcrossAThirdOrderEvaluationElsewhere) {
  const Dataset d = data_for(Activation::tanh, LossKind::cross_entropy);
  Mlp mlp(widths, Activation::tanh, LossKind::cross_entropy);
  const Vector theta = mlp.initial_parameters(3), v = random_vector(mlp.n_params(), 8);
  const Vector other = theta + 0.1 * random_vector(mlp.n_params(), 9);
  Mlp reference(widths, Activation::tanh, LossKind::cross_entropy);
  reference.use_reference_path(true);
  WholeVector whole(mlp.n_params());
  MlpObjective objective(std::move(mlp), d, d.n_samples(), 0.0, whole);
  Vector g, t, hv, expected;
  objective.value_and_gradient(theta, g);    // the fast path's forward pass at θ
  objective.third_order(other, v, v, t);     // jets at another point: that forward pass stays θ's
  objective.hessian_vector(other, v, hv);    // θ unchanged since the last call, but not since the gradient
  reference.hessian_vector(other, v, d, 1.0 / static_cast<double>(d.n_samples()), expected);
  EXPECT_LT(relative(hv, expected), 1e-13);
  objective.value(theta);                    // a loss-only pass: no backward pass to reuse
  objective.hessian_vector(theta, v, hv);
  reference.hessian_vector(theta, v, d, 1.0 / static_cast<double>(d.n_samples()), expected);
  EXPECT_LT(relative(hv, expected), 1e-13);
}
