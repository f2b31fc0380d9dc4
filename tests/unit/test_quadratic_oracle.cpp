// DESIGN.md §1.4, quadratic loss L = ½θᵀAθ: GD is (I - ηA)^k θ0 exactly; gradient flow is
// exp(-At)θ0; eom1 is exp(-(A + η/2 A²)t)θ0. The driver must reproduce all three.
#include <gtest/gtest.h>

#include <limits>

#include "core/rng.hpp"
#include "flow/driver.hpp"
#include "flow/flow.hpp"
#include "support/recording_sink.hpp"

using namespace eomlab;

namespace {

struct Quadratic {
  Matrix a;
  Eigen::SelfAdjointEigenSolver<Matrix> eig;
  Vector theta0;

  explicit Quadratic(Index n) {
    Rng r(17, rng_stream::test);
    Matrix m(n, n);
    for (Index i = 0; i < n; ++i)
      for (Index j = 0; j < n; ++j) m(i, j) = r.normal();
    const Eigen::HouseholderQR<Matrix> qr(m);
    const Matrix q = qr.householderQ();
    Vector lambda(n);
    for (Index i = 0; i < n; ++i) lambda[i] = 0.2 + 1.8 * static_cast<double>(i) / static_cast<double>(n - 1);
    a = q * lambda.asDiagonal() * q.transpose();
    a = 0.5 * (a + a.transpose()).eval();
    eig.compute(a);
    theta0.resize(n);
    for (Index i = 0; i < n; ++i) theta0[i] = r.normal();
  }

  // exp(t * f(A)) θ0 for a function f of the eigenvalues.
  template <class F>
  Vector spectral(F f, double t) const {
    const Vector lam = eig.eigenvalues();
    Vector e(lam.size());
    for (Index i = 0; i < lam.size(); ++i) e[i] = std::exp(t * f(lam[i]));
    return eig.eigenvectors() * e.asDiagonal() * eig.eigenvectors().transpose() * theta0;
  }
};

// Observables of one block holding all of θ.
ObservableLayout whole_block(Index n) {
  ObservableLayout layout;
  layout.blocks = {{"theta", 0, n, n, 1}};
  return layout;
}

}  // namespace

TEST(QuadraticOracle, GdGfAndEom1MatchClosedForms) {
  Quadratic q(6);
  QuadraticObjective objective(q.a);
  const double lr = 0.1;
  DriverSettings s;
  s.lr = lr;
  s.steps = 50;
  s.record_every = 5;
  s.flows = {"gf", "eom1"};
  s.integrator = {1e-12, 1e-14};
  test::RecordingSink sink;
  const WholeVector local(6);
  const RunOutcome out = run_synchronized(objective, q.theta0, s, whole_block(6), local, sink);
  ASSERT_EQ(out.status, RunStatus::complete);
  ASSERT_EQ(sink.records.size(), 11u);

  const Matrix step = Matrix::Identity(6, 6) - lr * q.a;
  Vector gd_exact = q.theta0;
  double smallest_distance = 1e300;
  for (const auto& rec : sink.records) {
    const double t = rec.time;
    EXPECT_DOUBLE_EQ(t, static_cast<double>(rec.step) * lr);
    EXPECT_LT((rec.trajectories[0].theta - gd_exact).norm(), 1e-14 * gd_exact.norm() * static_cast<double>(1 + rec.step));
    const Vector gf = q.spectral([](double l) { return -l; }, t);
    const Vector eom1 = q.spectral([lr](double l) { return -l - 0.5 * lr * l * l; }, t);
    const double gf_error = (rec.trajectories[1].theta - gf).norm();
    const double eom1_error = (rec.trajectories[2].theta - eom1).norm();
    if (rec.step > 0) {
      // Integration error far below the distance to GD that the study measures.
      const double gf_distance = rec.trajectories[1].distance_to_gd, eom1_distance = rec.trajectories[2].distance_to_gd;
      EXPECT_LT(gf_error, 1e-6 * gf_distance) << "t = " << t;
      EXPECT_LT(eom1_error, 1e-5 * eom1_distance) << "t = " << t;
      EXPECT_NEAR(gf_distance, (gf - gd_exact).norm(), 1e-9 * gf_distance);
      smallest_distance = std::min(smallest_distance, eom1_distance);
    }
    EXPECT_LT(gf_error, 1e-10 * q.theta0.norm());
    EXPECT_LT(eom1_error, 1e-10 * q.theta0.norm());
    for (int k = 0; k < s.record_every; ++k) gd_exact = step * gd_exact;
  }
  EXPECT_GT(smallest_distance, 1e-6);
  // Loss and gradient norm of GD at the last record.
  const auto& last = sink.records.back().trajectories[0];
  Vector g;
  EXPECT_DOUBLE_EQ(last.loss, objective.value_and_gradient(last.theta, g));
  EXPECT_NEAR(last.grad_norm, g.norm(), 1e-15);
  EXPECT_NEAR(last.block_norms[0], last.theta.squaredNorm(), 1e-15);
}

// The field of eomP on a quadratic is the truncation of (1/η) log(I - ηA) θ = -Σ_j η^{j-1} A^j θ / j.
double truncated_log_rate(double lambda, double lr, int order) {
  double rate = 0, power = lambda;
  for (int j = 1; j <= order + 1; ++j, power *= lr * lambda) rate -= power / j;
  return rate;
}

TEST(QuadraticOracle, EveryEomOrderIsTheTruncatedLogarithm) {
  Quadratic q(5);
  QuadraticObjective objective(q.a);
  const double lr = 0.15;
  DriverSettings s;
  s.lr = lr;
  s.steps = 30;
  s.record_every = 10;
  s.flows = {"gf", "eom1", "eom2", "eom3"};
  s.integrator = {1e-13, 1e-15};
  test::RecordingSink sink;
  const WholeVector local(5);
  run_synchronized(objective, q.theta0, s, whole_block(5), local, sink);
  for (const auto& rec : sink.records) {
    double previous = 1e300;
    for (int p = 0; p <= 3; ++p) {
      const Vector exact = q.spectral([&](double l) { return truncated_log_rate(l, lr, p); }, rec.time);
      const auto& traj = rec.trajectories[static_cast<std::size_t>(p + 1)];
      EXPECT_LT((traj.theta - exact).norm(), 1e-11 * q.theta0.norm()) << "order " << p << " t " << rec.time;
      if (rec.step > 0) {
        EXPECT_LT(traj.distance_to_gd, 0.5 * previous) << "order " << p;  // each order is closer to GD
        previous = traj.distance_to_gd;
      }
    }
  }
}

TEST(QuadraticOracle, FieldEvaluationEqualsTheSeries) {
  Quadratic q(4);
  QuadraticObjective objective(q.a, 0.05);  // weight decay shifts A by λI
  const Matrix a = q.a + 0.05 * Matrix::Identity(4, 4);
  const double lr = 0.3;
  Matrix power = a;
  Vector expected = Vector::Zero(4);
  for (int p = 0; p <= 3; ++p) {
    expected -= std::pow(lr, p) / (p + 1) * power * q.theta0;
    power = power * a;
    const auto field_owner = make_flow("eom" + std::to_string(p), objective, "gd", lr);
  Flow& field = *field_owner;
    Vector out;
    field(q.theta0, out);
    EXPECT_LT((out - expected).norm(), 1e-14 * expected.norm()) << "order " << p;
  }
}

TEST(QuadraticOracle, Eom1IsCloserToGdThanGf) {
  Quadratic q(4);
  QuadraticObjective objective(q.a);
  DriverSettings s;
  s.lr = 0.2;
  s.steps = 20;
  s.flows = {"gf", "eom1"};
  test::RecordingSink sink;
  const WholeVector local(4);
  run_synchronized(objective, q.theta0, s, whole_block(4), local, sink);
  for (std::size_t r = 1; r < sink.records.size(); ++r)
    EXPECT_LT(sink.records[r].trajectories[2].distance_to_gd, 0.5 * sink.records[r].trajectories[1].distance_to_gd);
}

TEST(QuadraticOracle, DivergingGdIsAResult) {
  // ηλ_max > 2: GD blows up; the run ends as `diverged` with the offending record written.
  Quadratic q(4);
  QuadraticObjective objective(q.a * 1e3);
  DriverSettings s;
  s.lr = 1.0;
  s.steps = 10000;
  s.record_every = 1000;
  s.divergence_factor = std::numeric_limits<double>::infinity();  // only a non-finite loss counts
  s.flows = {};
  test::RecordingSink sink;
  const WholeVector local(4);
  const RunOutcome out = run_synchronized(objective, q.theta0, s, whole_block(4), local, sink);
  EXPECT_EQ(out.status, RunStatus::diverged);
  EXPECT_LT(out.last_step, 10000);
  EXPECT_EQ(sink.records.back().step, out.last_step);
  EXPECT_FALSE(std::isfinite(sink.records.back().trajectories[0].loss));
}

TEST(QuadraticOracle, DivergenceIsTheFirstStepAboveTheFactorOfTheStartLoss) {
  // GD's loss on the quadratic is known in closed form: the run stops at the first step k with
  // L(θ_k) > divergence_factor · L(θ0), records it, and not one step later.
  Quadratic q(4);
  const Matrix a = q.a * 1e3;
  QuadraticObjective objective(a);
  DriverSettings s;
  s.lr = 1.0;
  s.steps = 10000;
  s.record_every = 1000;
  s.divergence_factor = 1e6;
  test::RecordingSink sink;
  const WholeVector local(4);
  const RunOutcome out = run_synchronized(objective, q.theta0, s, whole_block(4), local, sink);
  auto loss_at = [&](long k) {
    Vector theta = q.theta0;
    for (long i = 0; i < k; ++i) theta -= s.lr * (a * theta);
    return 0.5 * theta.dot(a * theta);
  };
  const double limit = 1e6 * loss_at(0);
  long first = 0;
  while (loss_at(first) <= limit) ++first;
  EXPECT_EQ(out.status, RunStatus::diverged);
  EXPECT_EQ(out.last_step, first);
  EXPECT_EQ(sink.records.back().step, first);
  EXPECT_NEAR(sink.records.back().trajectories[0].loss, loss_at(first), 1e-9 * loss_at(first));
}
