// Conservation laws of DESIGN.md §1.4 measured through the driver on real networks.
#include <gtest/gtest.h>

#include <cmath>

#include "data/synthetic.hpp"
#include "flow/driver.hpp"
#include "support/recording_sink.hpp"
#include "support/model.hpp"

using namespace eomlab;

namespace {

struct Study {
  Dataset data;
  ModelConfig model;
  Study(Normalization norm, std::uint64_t seed) {
    DataConfig d;
    d.n_samples = 48;
    d.n_features = 5;
    d.n_classes = 3;
    d.seed = seed;
    model.layers = {5, 8, 3};
    model.normalize = norm;
    data = make_synthetic(d, model);
  }

  std::vector<test::StoredRecord> run(double lr, long steps, long record_every, double wd, std::vector<std::string> flows,
                                      ModelObjective** objective_out = nullptr) {
    Model mlp = test::mlp_model(model.layers, Activation::tanh, LossKind::cross_entropy, model.normalize);
    const Vector theta0 = mlp.initial_parameters(7);
    const ObservableLayout layout = observable_layout(mlp, false);
    local = std::make_unique<WholeVector>(mlp.n_params());
    objective = std::make_unique<ModelObjective>(std::move(mlp), data, data.n_samples(), wd, *local);
    if (objective_out) *objective_out = objective.get();
    DriverSettings s;
    s.lr = lr;
    s.steps = steps;
    s.record_every = record_every;
    s.flows = std::move(flows);
    s.integrator = {1e-13, 1e-15};
    test::RecordingSink sink;
    run_synchronized(*objective, theta0, s, layout, *local, sink);
    return sink.records;
  }

  std::unique_ptr<WholeVector> local;
  std::unique_ptr<ModelObjective> objective;
};

double loglog_slope(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double lx = std::log(x[i]), ly = std::log(y[i]);
    sx += lx, sy += ly, sxx += lx * lx, sxy += lx * ly;
  }
  return (n * sxy - sx * sy) / (n * sxx - sx * sx);
}

}  // namespace

TEST(TranslationInvariance, OutputBiasClassSumDecaysAtTheGdGfAndEomRates) {
  // ⟨v, θ⟩ for v = ones on the output bias: GD (1 - ηλ)^k, gf e^{-λt}, eomP the truncated series of
  // log(1 - ηλ)/η: -λ - ηλ²/2 - η²λ³/3 - η³λ⁴/4.
  Study study(Normalization::none, 1);
  const double lr = 0.1, wd = 0.05;
  const auto records = study.run(lr, 40, 10, wd, {"gf", "eom1", "eom2", "eom3"});
  const std::size_t bias = records[0].trajectories[0].translation_components.size() - 1;
  const double s0 = records[0].trajectories[0].translation_components[bias];
  ASSERT_GT(std::abs(s0), 1e-3);
  for (const auto& rec : records) {
    const double t = rec.time;
    EXPECT_NEAR(rec.trajectories[0].translation_components[bias], s0 * std::pow(1 - lr * wd, rec.step), 1e-12 * std::abs(s0));
    double rate = 0, term = wd;
    for (int p = 0; p <= 3; ++p, term *= lr * wd) {
      rate -= term / (p + 1);
      const double measured = rec.trajectories[static_cast<std::size_t>(p + 1)].translation_components[bias];
      EXPECT_NEAR(measured, s0 * std::exp(rate * t), 1e-9 * std::abs(s0)) << "order " << p << " t " << t;
    }
  }
  // The weight columns' class-sums follow the same laws.
  const auto& last = records.back();
  const double w0 = records[0].trajectories[0].translation_components[0];
  EXPECT_NEAR(last.trajectories[1].translation_components[0], w0 * std::exp(-wd * last.time), 1e-9 * std::abs(w0));
}

TEST(TranslationInvariance, ConservedWithoutWeightDecayByEveryTrajectory) {
  Study study(Normalization::none, 2);
  const auto records = study.run(0.2, 30, 10, 0.0, {"gf", "eom1", "eom2", "eom3"});
  const auto& first = records[0].trajectories[0].translation_components;
  for (const auto& rec : records)
    for (const auto& traj : rec.trajectories)
      for (std::size_t c = 0; c < first.size(); ++c) EXPECT_NEAR(traj.translation_components[c], first[c], 1e-11);
}

TEST(ScaleInvariance, GdAddsExactlyLrSquaredGradNormSquaredAndGfConserves) {
  Study study(Normalization::layer, 3);
  ModelObjective* objective = nullptr;
  const double lr = 0.2;
  const auto records = study.run(lr, 25, 1, 0.0, {"gf"}, &objective);
  const auto blocks = objective->model().scale_invariant_blocks();
  ASSERT_EQ(blocks.size(), 1u);  // one hidden layer: its (W, b)
  const ParameterBlock& a = blocks[0];
  Vector g;
  for (std::size_t r = 0; r + 1 < records.size(); ++r) {
    const auto& gd = records[r].trajectories[0];
    objective->value_and_gradient(gd.theta, g);
    const double expected = gd.scale_invariant_norms[0] + lr * lr * g.segment(a.offset, a.size).squaredNorm();
    EXPECT_NEAR(records[r + 1].trajectories[0].scale_invariant_norms[0], expected, 1e-13 * expected) << "step " << r;
  }
  const double n0 = records[0].trajectories[1].scale_invariant_norms[0];
  for (const auto& rec : records) EXPECT_NEAR(rec.trajectories[1].scale_invariant_norms[0], n0, 1e-9 * n0);
  // GD's norm really grows (the test would be vacuous otherwise).
  EXPECT_GT(records.back().trajectories[0].scale_invariant_norms[0], n0 * (1 + 1e-6));
}

TEST(ScaleInvariance, Eom1AndEom2TrackGdNormWithErrorsShrinkingAtTheirOrders) {
  std::vector<double> lrs;
  std::vector<std::vector<double>> errors(3);
  for (double lr : {0.16, 0.08, 0.04, 0.02}) {
    Study study(Normalization::layer, 3);
    const long steps = std::lround(1.6 / lr);
    const auto records = study.run(lr, steps, steps, 0.0, {"gf", "eom1", "eom2"});
    const auto& last = records.back();
    lrs.push_back(lr);
    const double gd = last.trajectories[0].scale_invariant_norms[0];
    for (int p = 0; p < 3; ++p)
      errors[static_cast<std::size_t>(p)].push_back(std::abs(last.trajectories[static_cast<std::size_t>(p + 1)].scale_invariant_norms[0] - gd));
  }
  for (int p = 0; p < 3; ++p) {
    const double slope = loglog_slope(lrs, errors[static_cast<std::size_t>(p)]);
    std::printf("‖θ_A‖² error of order %d: %.3e ... %.3e, slope %.3f\n", p, errors[static_cast<std::size_t>(p)].front(),
                errors[static_cast<std::size_t>(p)].back(), slope);
    EXPECT_NEAR(slope, p + 1.0, 0.3) << "order " << p;
  }
}

TEST(ScaleInvariance, WeightNormRowsAreConservedByGf) {
  Study study(Normalization::weight, 4);
  const auto records = study.run(0.1, 20, 5, 0.0, {"gf", "eom2"});
  const auto& first = records[0].trajectories[1].scale_invariant_norms;
  ASSERT_EQ(first.size(), 8u);  // one per hidden neuron
  for (const auto& rec : records)
    for (std::size_t b = 0; b < first.size(); ++b) {
      EXPECT_NEAR(rec.trajectories[1].scale_invariant_norms[b], first[b], 1e-9 * first[b]);
      EXPECT_GE(rec.trajectories[0].scale_invariant_norms[b], first[b] * (1 - 1e-14));  // GD only grows them
    }
}
