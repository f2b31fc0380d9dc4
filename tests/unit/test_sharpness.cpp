// Sharpness by Lanczos on HVPs against the largest eigenvalue of the full Hessian built from HVPs.
#include <gtest/gtest.h>

#include "data/synthetic.hpp"
#include "diff/sharpness.hpp"
#include "support/mixture.hpp"

using namespace eomlab;

TEST(Sharpness, MatchesTheLargestEigenvalueOfTheFullHessian) {
  ModelConfig model;
  model.layers = {4, 6, 3};
  for (Activation act : {Activation::tanh, Activation::gelu}) {
    Mlp mlp(model.layers, act, LossKind::cross_entropy);
    const Vector theta = mlp.initial_parameters(3);
    const WholeVector local(mlp.n_params());
    MlpObjective objective(std::move(mlp), test::mixture(40, model.layers), 40, 0.01, local);
    const Index p = theta.size();
    Matrix h(p, p);
    Vector e = Vector::Zero(p), col;
    for (Index i = 0; i < p; ++i) {
      e[i] = 1.0;
      objective.hessian_vector(theta, e, col);
      h.col(i) = col;
      e[i] = 0.0;
    }
    const double exact = Eigen::SelfAdjointEigenSolver<Matrix>(0.5 * (h + h.transpose())).eigenvalues()[p - 1];
    SharpnessEstimator estimate(60, 1e-12);
    const SharpnessResult r = estimate(objective, theta, local);
    EXPECT_TRUE(r.converged);
    EXPECT_NEAR(r.value, exact, 1e-8 * std::abs(exact)) << to_string(act);
    // Warm start: a second call at the same point converges at once.
    const SharpnessResult again = estimate(objective, theta, local);
    EXPECT_NEAR(again.value, exact, 1e-8 * std::abs(exact));
    EXPECT_LE(again.iterations, 3);
  }
}

TEST(Sharpness, QuadraticIsTheLargestEigenvalueOfA) {
  Matrix a = Matrix::Zero(5, 5);
  a.diagonal() << 0.5, -1.0, 3.0, 2.0, 0.1;
  QuadraticObjective q(a);
  LocalReducer local;
  SharpnessEstimator estimate;
  EXPECT_NEAR(estimate(q, Vector::Ones(5), local).value, 3.0, 1e-10);
}
