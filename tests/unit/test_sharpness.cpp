// Sharpness by Lanczos on HVPs against the largest eigenvalue of the full Hessian built from HVPs.
#include <gtest/gtest.h>

#include <Eigen/Eigenvalues>
#include <cmath>
#include <limits>

#include "data/synthetic.hpp"
#include "core/rng.hpp"
#include "diff/sharpness.hpp"
#include "support/mixture.hpp"
#include "support/model.hpp"

using namespace eomlab;

namespace {

Matrix full_hessian(Objective& objective, const Vector& theta) {
  const Index p = theta.size();
  Matrix h(p, p);
  Vector e = Vector::Zero(p), col;
  for (Index i = 0; i < p; ++i) {
    e[i] = 1.0;
    objective.hessian_vector(theta, e, col);
    h.col(i) = col;
    e[i] = 0.0;
  }
  return 0.5 * (h + h.transpose());
}

struct Case {
  Activation activation;
  Normalization normalize;
  LossKind loss;
  double weight_decay;
};

std::string describe(const Case& c) {
  return std::string(to_string(c.activation)) + " " + to_string(c.normalize) + " " + to_string(c.loss) +
         " wd " + std::to_string(c.weight_decay);
}

}  // namespace

// Every normalization, both losses, with and without weight decay. With layer normalization and
// weight decay the all-ones vector is an exact eigenvector (eigenvalue λ) of the Hessian: a Lanczos
// started there stopped at once and reported λ instead of λ_max.
TEST(Sharpness, MatchesTheLargestEigenvalueOfTheFullHessian) {
  const std::vector<Index> widths{4, 6, 5, 3};
  for (Normalization norm : {Normalization::none, Normalization::layer, Normalization::weight})
    for (LossKind loss : {LossKind::cross_entropy, LossKind::mse})
      for (double wd : {0.0, 1e-3})
        for (Activation act : {Activation::tanh, Activation::gelu}) {
          const Case c{act, norm, loss, wd};
          Model mlp = test::mlp_model(widths, act, loss, norm);
          const Vector theta = mlp.initial_parameters(3);
          const WholeVector local(mlp.n_params());
          ModelObjective objective(std::move(mlp), test::teacher(40, widths, act, loss, 5), 40, wd, local);
          const Matrix h = full_hessian(objective, theta);
          const Eigen::SelfAdjointEigenSolver<Matrix> eig(h);
          const double exact = eig.eigenvalues()[h.rows() - 1];
          SharpnessEstimator estimate(80, 1e-12);
          const SharpnessResult r = estimate(objective, theta, local);
          EXPECT_TRUE(r.converged) << describe(c);
          EXPECT_NEAR(r.value, exact, 1e-8 * std::abs(exact)) << describe(c);
          // Warm start: a second call at the same point converges at once.
          const SharpnessResult again = estimate(objective, theta, local);
          EXPECT_NEAR(again.value, exact, 1e-8 * std::abs(exact)) << describe(c);
          EXPECT_LE(again.iterations, 3) << describe(c);
        }
}

// The defect's own setting, checked directly: ones is an eigenvector for λ, far below λ_max.
TEST(Sharpness, OnesIsAnEigenvectorUnderLayerNormWithWeightDecay) {
  const std::vector<Index> widths{4, 6, 3};
  Model mlp = test::mlp_model(widths, Activation::tanh, LossKind::cross_entropy, Normalization::layer);
  const Vector theta = mlp.initial_parameters(1);
  const WholeVector local(mlp.n_params());
  ModelObjective objective(std::move(mlp), test::mixture(30, widths), 30, 1e-3, local);
  const Vector ones = Vector::Ones(theta.size());
  Vector h_ones;
  objective.hessian_vector(theta, ones, h_ones);
  EXPECT_LT((h_ones - 1e-3 * ones).norm(), 1e-10 * ones.norm());
  const Matrix h = full_hessian(objective, theta);
  const double exact = Eigen::SelfAdjointEigenSolver<Matrix>(h).eigenvalues()[h.rows() - 1];
  ASSERT_GT(exact, 100 * 1e-3);
  SharpnessEstimator estimate(80, 1e-12);
  EXPECT_NEAR(estimate(objective, theta, local).value, exact, 1e-8 * exact);
}

// The random start's entries depend on their global index only: any slicing gives the same vector.
TEST(Sharpness, RandomStartIsIndependentOfTheSlicing) {
  const Vector whole = seeded_random_slice(0, 101, 7);
  for (int ranks : {2, 3, 7})
    for (int r = 0; r < ranks; ++r) {
      const Index b = slice_begin(101, r, ranks), e = slice_begin(101, r + 1, ranks);
      EXPECT_EQ(seeded_random_slice(b, e - b, 7), whole.segment(b, e - b));
    }
  EXPECT_LT(whole.cwiseAbs().maxCoeff(), 1.0);
  EXPECT_NEAR(whole.mean(), 0.0, 0.2);
  EXPECT_NE(seeded_random_slice(0, 101, 8), whole);
}

TEST(Sharpness, QuadraticIsTheLargestEigenvalueOfA) {
  Matrix a = Matrix::Zero(5, 5);
  a.diagonal() << 0.5, -1.0, 3.0, 2.0, 0.1;
  QuadraticObjective q(a);
  const WholeVector local(5);
  SharpnessEstimator estimate;
  EXPECT_NEAR(estimate(q, Vector::Ones(5), local).value, 3.0, 1e-10);
}

// With a scale s: the top eigenvalue of S A S, S = diag(s), which is λ_max(P⁻¹A) for P = S⁻²: the
// preconditioned sharpness of RMSProp and Adam. A is indefinite and not diagonal.
TEST(Sharpness, ScaledIsTheLargestEigenvalueOfThePreconditionedMatrix) {
  Rng rng(7, 0);
  Matrix a(6, 6);
  for (Index i = 0; i < 6; ++i)
    for (Index j = 0; j <= i; ++j) a(i, j) = a(j, i) = rng.normal();
  Vector s(6);
  for (Index i = 0; i < 6; ++i) s[i] = 0.2 + std::abs(rng.normal());
  QuadraticObjective q(a);
  const WholeVector local(6);
  const Matrix p_inverse_a = s.array().square().matrix().asDiagonal() * a;
  const Eigen::VectorXcd spectrum = p_inverse_a.eigenvalues();
  double exact = -std::numeric_limits<double>::infinity();
  for (Index i = 0; i < spectrum.size(); ++i) exact = std::max(exact, spectrum[i].real());
  SharpnessEstimator estimate(30, 1e-12);
  const SharpnessResult r = estimate(q, Vector::Ones(6), local, {}, &s);
  EXPECT_TRUE(r.converged);
  EXPECT_NEAR(r.value, exact, 1e-10 * std::abs(exact));
  const Eigen::SelfAdjointEigenSolver<Matrix> plain(a);
  EXPECT_GT(std::abs(exact - plain.eigenvalues()[5]), 0.1) << "the scale must matter";
  SharpnessEstimator unscaled(30, 1e-12);
  EXPECT_NEAR(unscaled(q, Vector::Ones(6), local).value, plain.eigenvalues()[5], 1e-10);
}

namespace {

// Two ranks simulated one after the other: rank 0 runs first and its reductions are logged; rank 1's
// reductions add rank 0's contribution to the same call (so both see the sums a real run would,
// as long as they make the same calls). Counts every rank's calls.
class TwoRankSlices final : public SliceExchange {
 public:
  TwoRankSlices(Index n, int rank, std::vector<std::vector<double>>& log)
      : n_(n), rank_(rank), begin_(slice_begin(n, rank, 2)), end_(slice_begin(n, rank + 1, 2)), log_(log) {}
  Index global_size() const override { return n_; }
  Index begin() const override { return begin_; }
  Index end() const override { return end_; }
  void sum_in_place(double* data, std::size_t n) const override {
    if (rank_ == 0) {
      log_.emplace_back(data, data + n);
    } else if (calls < log_.size() && log_[calls].size() == n) {
      for (std::size_t i = 0; i < n; ++i) data[i] += log_[calls][i];
    }
    ++calls;
  }
  void all_gather(const Vector& slice, Vector& whole) const override { whole = slice; }
  void reduce_scatter(Vector& whole, Vector& slice) const override { slice.swap(whole); }
  std::uint64_t bytes_sent() const override { return 0; }
  mutable std::size_t calls = 0;

 private:
  Index n_;
  int rank_;
  Index begin_, end_;
  std::vector<std::vector<double>>& log_;
};

}  // namespace

TEST(Sharpness, EveryRankMakesTheSameReductionsWhenOnlyOneRanksWarmStartIsNotFinite) {
  // A warm start with a NaN in rank 0's slice only: both ranks must agree (collectively) whether to
  // use it, or rank 1 waits in a reduction rank 0 never makes.
  Matrix a = Matrix::Identity(4, 4);
  QuadraticObjective q(a);
  std::vector<std::vector<double>> log;
  std::size_t calls[2];
  for (int rank = 0; rank < 2; ++rank) {
    const TwoRankSlices slices(4, rank, log);
    SharpnessEstimator estimate;
    Vector start = Vector::Ones(2);
    if (rank == 0) start[1] = std::numeric_limits<double>::quiet_NaN();
    estimate.set_warm_start(start);
    const auto r = estimate(q, Vector::Zero(2), slices, [] { return true; });
    EXPECT_TRUE(r.interrupted);
    calls[rank] = slices.calls;
  }
  EXPECT_EQ(calls[0], calls[1]);
}
