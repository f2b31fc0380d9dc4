// The fast path of the MLP (model/dense_path.hpp) against the jet path that defines the results: loss,
// gradient and HVP for every activation and loss; the HVP that reuses a gradient's forward pass gives the
// same bits as a fresh one, and ModelObjective reuses it only at the same θ.
#include <gtest/gtest.h>

#include <tuple>

#include "diff/objective.hpp"
#include "support/finite_difference.hpp"
#include "support/mixture.hpp"
#include "support/random_vector.hpp"
#include "support/model.hpp"

using namespace eomlab;
using test::random_vector;
using test::relative_error;

namespace {

const std::vector<Index> widths{6, 9, 8, 4};

Dataset data_for(Activation act, LossKind loss) { return test::teacher(30, widths, act, loss, 4); }

// A tanh cross-entropy objective with weight decay, two points θ and `other`, a direction v, and the
// same network on the jet path, which gives the expected HVPs.
struct ObjectiveAndReference {
  explicit ObjectiveAndReference(double decay)
      : data(data_for(Activation::tanh, LossKind::cross_entropy)),
        reference(test::mlp_model(widths, Activation::tanh, LossKind::cross_entropy)),
        theta(reference.initial_parameters(3)),
        other(theta + 0.1 * random_vector(theta.size(), 9)),
        v(random_vector(theta.size(), 8)),
        whole(theta.size()),
        objective(test::mlp_model(widths, Activation::tanh, LossKind::cross_entropy), data, data.n_samples(), decay,
                  whole),
        weight_decay(decay) {
    reference.use_reference_path(true);
  }
  Vector expected_hvp(const Vector& at) {
    Vector hv;
    reference.hessian_vector(at, v, data, 1.0 / static_cast<double>(data.n_samples()), hv);
    return hv + weight_decay * v;
  }

  Dataset data;
  Model reference;
  Vector theta, other, v;
  WholeVector whole;
  ModelObjective objective;
  double weight_decay;
};

using Case = std::tuple<Activation, LossKind>;
class DensePathAgainstJets : public ::testing::TestWithParam<Case> {};

}  // namespace

TEST_P(DensePathAgainstJets, LossGradientAndHvpAgree) {
  const auto [act, loss] = GetParam();
  const Dataset d = data_for(act, loss);
  Model fast = test::mlp_model(widths, act, loss), reference = test::mlp_model(widths, act, loss);
  reference.use_reference_path(true);
  const Vector theta = fast.initial_parameters(3), v = random_vector(fast.n_params(), 8);
  const double scale = 1.0 / 30;
  Vector g_fast, g_ref, h_fast, h_ref;
  const double l_fast = fast.loss_and_gradient(theta, d, scale, g_fast);
  const double l_ref = reference.loss_and_gradient(theta, d, scale, g_ref);
  EXPECT_NEAR(l_fast, l_ref, 1e-14 * std::abs(l_ref));
  EXPECT_NEAR(fast.loss_value(theta, d, scale), l_ref, 1e-14 * std::abs(l_ref));
  EXPECT_LT(relative_error(g_fast, g_ref), 1e-13);
  fast.hessian_vector(theta, v, d, scale, h_fast);
  reference.hessian_vector(theta, v, d, scale, h_ref);
  EXPECT_LT(relative_error(h_fast, h_ref), 1e-13);
}

INSTANTIATE_TEST_SUITE_P(All, DensePathAgainstJets,
                         ::testing::Combine(::testing::Values(Activation::tanh, Activation::softplus, Activation::gelu,
                                                              Activation::relu),
                                            ::testing::Values(LossKind::cross_entropy, LossKind::mse)));

TEST(DensePath, ReusedForwardPassGivesTheSameBits) {
  const Dataset d = data_for(Activation::tanh, LossKind::cross_entropy);
  Model mlp = test::mlp_model(widths, Activation::tanh, LossKind::cross_entropy);
  const Vector theta = mlp.initial_parameters(3), v = random_vector(mlp.n_params(), 8);
  Vector g, fresh, reused, after_loss;
  mlp.hessian_vector(theta, v, d, 0.1, fresh);
  mlp.loss_and_gradient(theta, d, 0.1, g, {1, 0});
  mlp.hessian_vector(theta, v, d, 0.1, reused, {1, 0});
  EXPECT_EQ(fresh, reused);
  // A loss-only evaluation may overwrite a kept pass; the key must then not reuse a stale one.
  mlp.loss_and_gradient(theta + v, d, 0.1, g, {2, 0});
  mlp.loss_value(theta, d, 0.1);
  mlp.hessian_vector(theta, v, d, 0.1, after_loss, {2, 0});
  EXPECT_EQ(fresh, after_loss);
}

// Minibatch SGD's eom1 field: every batch's gradient, then every batch's HVP at the same θ. The passes of
// all batches are kept (the HVPs reuse them) and give the bits of fresh HVPs; a wrong reuse (another
// batch's or another point's pass) would change them.
TEST(DensePath, KeepsThePassesOfSeveralBatches) {
  const Dataset d = data_for(Activation::tanh, LossKind::cross_entropy);
  Model mlp = test::mlp_model(widths, Activation::tanh, LossKind::cross_entropy);
  const Vector theta = mlp.initial_parameters(3), v = random_vector(mlp.n_params(), 8);
  std::vector<Dataset> batches(3);
  for (int b = 0; b < 3; ++b) {
    batches[b].sample_shape = d.sample_shape;
    const Index n = d.n_samples() / 3;
    batches[b].x = d.x.middleCols(b * n, n);
    batches[b].labels.assign(d.labels.begin() + b * n, d.labels.begin() + (b + 1) * n);
  }
  std::vector<Vector> fresh(3);
  for (int b = 0; b < 3; ++b) mlp.hessian_vector(theta, v, batches[b], 0.5, fresh[b]);
  Vector g, hv;
  const auto gradients = [&](const Vector& at, long point) {
    for (int b = 0; b < 3; ++b) mlp.loss_and_gradient(at, batches[b], 0.5, g, {point, b});
  };
  const auto hvps_are_fresh = [&](long point) {
    for (int b = 3; b-- > 0;) {
      mlp.hessian_vector(theta, v, batches[b], 0.5, hv, {point, b});
      EXPECT_EQ(hv, fresh[b]) << "batch " << b << ", point " << point;
    }
  };
  gradients(theta, 10);
  hvps_are_fresh(10);
  // The slots first filled at another point, then at θ again under a new point.
  gradients(theta + v, 11);
  gradients(theta, 12);
  hvps_are_fresh(12);
  // The passes are reused, not remade: told (falsely) that θ + v is the point of key {13, 1}, the HVP
  // runs its tangent passes on θ's kept primal and differs from a fresh HVP at θ + v.
  Vector fresh_there, told;
  mlp.hessian_vector(theta + v, v, batches[1], 0.5, fresh_there);
  mlp.loss_and_gradient(theta, batches[1], 0.5, g, {13, 1});
  mlp.hessian_vector(theta + v, v, batches[1], 0.5, told, {13, 1});
  EXPECT_GT((told - fresh_there).norm(), 1e-6 * fresh_there.norm());
}

TEST(DensePath, ObjectiveReusesTheForwardPassOnlyAtTheSamePoint) {
  ObjectiveAndReference p(0.01);
  Vector g, hv;
  // A gradient at one point, then an HVP at the same or at another one.
  const std::pair<const Vector*, const Vector*> sequence[] = {{&p.theta, &p.theta}, {&p.theta, &p.other},
                                                              {&p.other, &p.other}, {&p.other, &p.theta}};
  for (const auto& [gradient_point, hvp_point] : sequence) {
    p.objective.value_and_gradient(*gradient_point, g);
    p.objective.hessian_vector(*hvp_point, p.v, hv);
    EXPECT_LT(relative_error(hv, p.expected_hvp(*hvp_point)), 1e-13);
  }
}

TEST(DensePath, ObjectiveDoesNotReuseAcrossAThirdOrderEvaluationElsewhere) {
  ObjectiveAndReference p(0.0);
  Vector g, t, hv;
  p.objective.value_and_gradient(p.theta, g);      // the fast path's forward pass at θ
  p.objective.third_order(p.other, p.v, p.v, t);   // jets at another point: that forward pass stays θ's
  p.objective.hessian_vector(p.other, p.v, hv);    // θ unchanged since the last call, but not since the gradient
  EXPECT_LT(relative_error(hv, p.expected_hvp(p.other)), 1e-13);
  p.objective.value(p.theta);                      // a loss-only pass: no backward pass to reuse
  p.objective.hessian_vector(p.theta, p.v, hv);
  EXPECT_LT(relative_error(hv, p.expected_hvp(p.theta)), 1e-13);
}
