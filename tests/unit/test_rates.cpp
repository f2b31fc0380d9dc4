// The observables of DESIGN.md §3.8 recorded by the driver, against the same quantities computed here
// from the stored iterates: block_grad_norms ‖g_A‖² from the objective's gradient, the predicted rates
// 2⟨θ_A, F_A(θ_k)⟩ and ⟨v_c, F(θ_k)⟩ from each flow's field evaluated at the stored θ_k, and the measured
// rates from consecutive stored iterates (record_every = 1; the last from one more GD step taken here).
#include <gtest/gtest.h>

#include <cmath>

#include "data/synthetic.hpp"
#include "flow/driver.hpp"
#include "flow/flow.hpp"
#include "support/model.hpp"
#include "support/recording_sink.hpp"

using namespace eomlab;

namespace {

double close_to(double got, double want) { return std::abs(got - want) / std::max(1.0, std::abs(want)); }

double block_dot(const Vector& a, const Vector& b, const ParameterBlock& block) {
  return a.segment(block.offset, block.size).dot(b.segment(block.offset, block.size));
}

double component(const Vector& x, const ParameterSum& s) {
  double sum = 0;
  for (Index i = 0; i < s.count; ++i) sum += x[s.offset + i * s.stride];
  return sum;
}

struct RatesRun {
  Dataset data;
  ModelConfig model;
  std::unique_ptr<WholeVector> whole;
  std::unique_ptr<ModelObjective> objective;
  ObservableLayout layout;
  DriverSettings settings;
  std::vector<test::StoredRecord> records;

  RatesRun(Normalization normalize, double weight_decay) {
    DataConfig d;
    d.n_samples = 40;
    d.n_features = 4;
    d.n_classes = 3;
    d.seed = 3;
    model.layers = {4, 6, 3};
    model.normalize = normalize;
    data = make_synthetic(d, model);
    Model mlp = test::mlp_model(model.layers, Activation::tanh, LossKind::cross_entropy, normalize);
    const Vector theta0 = mlp.initial_parameters(5);
    layout = observable_layout(mlp, false);
    whole = std::make_unique<WholeVector>(mlp.n_params());
    objective = std::make_unique<ModelObjective>(std::move(mlp), data, data.n_samples(), weight_decay, *whole);
    settings.lr = 0.2;
    settings.steps = 6;
    settings.record_every = 1;
    settings.flows = {"gf", "eom1", "eom2"};
    settings.integrator = {1e-12, 1e-14};
    settings.rates = true;
    test::RecordingSink sink;
    run_synchronized(*objective, theta0, settings, layout, *whole, sink);
    records = sink.records;
  }

  // θ_{k+1} of GD after the stored record k.
  Vector next_iterate(std::size_t k) {
    if (k + 1 < records.size()) return records[k + 1].trajectories[0].theta;
    Vector g;
    objective->value_and_gradient(records[k].trajectories[0].theta, g);
    return records[k].trajectories[0].theta - settings.lr * g;
  }
};

}  // namespace

TEST(Rates, BlockGradNormsAreTheSquaredGradientOfEachBlockOnEveryTrajectory) {
  RatesRun run(Normalization::layer, 0.01);
  ASSERT_EQ(run.records.size(), 7u);
  for (const test::StoredRecord& r : run.records)
    for (const test::StoredTrajectory& t : r.trajectories) {
      Vector g;
      run.objective->value_and_gradient(t.theta, g);
      const std::vector<double> recorded = t["block_grad_norms"];
      ASSERT_EQ(recorded.size(), run.layout.blocks.size());
      for (std::size_t b = 0; b < run.layout.blocks.size(); ++b)
        EXPECT_LT(close_to(recorded[b], block_dot(g, g, run.layout.blocks[b])), 1e-9) << run.layout.blocks[b].name;
    }
}

TEST(Rates, PredictedRatesAreEachFlowsFieldAtTheStoredIterates) {
  for (const double wd : {0.0, 0.05}) {
    RatesRun run(Normalization::none, wd);
    for (const std::string& flow : run.settings.flows) {
      const auto field = make_flow(flow, *run.objective, "gd", run.settings.lr);
      for (const test::StoredRecord& r : run.records) {
        const Vector& theta = r.trajectories[0].theta;
        Vector f;
        (*field)(theta, f);
        const std::vector<double> blocks = r.trajectories[0]["predicted_block_rates/" + flow];
        ASSERT_EQ(blocks.size(), run.layout.blocks.size()) << flow;
        for (std::size_t b = 0; b < blocks.size(); ++b)
          EXPECT_LT(close_to(blocks[b], 2 * block_dot(theta, f, run.layout.blocks[b])), 1e-9) << flow << " step " << r.step;
        const std::vector<double> translation = r.trajectories[0]["predicted_translation_rates/" + flow];
        ASSERT_EQ(translation.size(), run.layout.translation.size());
        for (std::size_t c = 0; c < translation.size(); ++c)
          EXPECT_LT(close_to(translation[c], component(f, run.layout.translation[c])), 1e-9) << flow;
      }
    }
  }
}

TEST(Rates, MeasuredRatesAreTheStepsOfTheStoredTrajectory) {
  RatesRun run(Normalization::weight, 0.05);
  const double lr = run.settings.lr;
  for (std::size_t k = 0; k < run.records.size(); ++k) {
    const Vector& theta = run.records[k].trajectories[0].theta;
    const Vector next = run.next_iterate(k);
    const std::vector<double> blocks = run.records[k].trajectories[0]["measured_block_rates"];
    ASSERT_EQ(blocks.size(), run.layout.blocks.size());
    for (std::size_t b = 0; b < blocks.size(); ++b) {
      const ParameterBlock& block = run.layout.blocks[b];
      const double want = (block_dot(next, next, block) - block_dot(theta, theta, block)) / lr;
      EXPECT_LT(close_to(blocks[b], want), 1e-9) << block.name << " step " << k;
    }
    const std::vector<double> translation = run.records[k].trajectories[0]["measured_translation_rates"];
    ASSERT_EQ(translation.size(), run.layout.translation.size());
    for (std::size_t c = 0; c < translation.size(); ++c) {
      const ParameterSum& s = run.layout.translation[c];
      EXPECT_LT(close_to(translation[c], (component(next, s) - component(theta, s)) / lr), 1e-9) << s.name;
    }
  }
}

TEST(Rates, OnlyTheDiscreteTrajectoryCarriesRatesAndOnlyWhenAskedFor) {
  RatesRun run(Normalization::none, 0.0);
  EXPECT_FALSE(run.records[0].trajectories[0]["measured_block_rates"].empty());
  EXPECT_TRUE(run.records[0].trajectories[1]["measured_block_rates"].empty());
  EXPECT_TRUE(run.records[0].trajectories[1]["predicted_block_rates/gf"].empty());
  const RecordLayout off = record_layout(DriverSettings{}, run.layout, *run.whole);
  for (const SeriesShape& s : off[0].series) EXPECT_EQ(s.name.find("rates"), std::string::npos) << s.name;
}
