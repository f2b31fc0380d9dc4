// A run stopped at any step and continued from its checkpoint produces the same records, bit for
// bit, as the uninterrupted run (the driver's half of --resume; the files' half is end-to-end tested).
#include <gtest/gtest.h>

#include <cstring>

#include "data/synthetic.hpp"
#include "flow/driver.hpp"
#include "support/mixture.hpp"
#include "support/recording_sink.hpp"
#include "support/model.hpp"

using namespace eomlab;

namespace {

// Stops at the q-th time the driver asks during step k: q = 1 is the top of the step (for k > 0); in a
// record's step the queries come between the flows' integrator steps, then between the HVPs of the
// sharpness's Lanczos (and of the preconditioned one), which come last. With no stop (k < 0) it counts
// the queries of every step.
class StopAt final : public RunControl {
 public:
  StopAt(long k, long q) : step_(k), query_(q) {}
  bool stop_requested(long step) override {
    if (static_cast<std::size_t>(step) >= queries.size()) queries.resize(static_cast<std::size_t>(step) + 1, 0);
    return ++queries[static_cast<std::size_t>(step)] == query_ && step == step_;
  }
  bool checkpoint_due(long) override { return false; }
  void save(const DriverCheckpoint& c) override { saved = c; }
  DriverCheckpoint saved;
  std::vector<long> queries;  // per step

 private:
  long step_, query_;
};

bool same_bits(const Vector& a, const Vector& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(double) * static_cast<std::size_t>(a.size())) == 0;
}

}  // namespace

// Every method kind: GD, and Adam with the preconditioned sharpness (a second Lanczos with its own warm
// start). Stops at the top of steps, inside record 0 (the run ends interrupted with no record, exit 75 in
// a study; it crashed once), and after n queries, which fall between integrator steps and between the
// HVPs of either Lanczos.
TEST(Resume, StoppedAndContinuedRunsEqualTheUninterruptedRunBitwise) {
  for (const std::string method : {"gd", "adam"}) {
  ModelConfig model;
  model.layers = {4, 6, 3};
  const Dataset data = test::mixture(40, model.layers);
  DriverSettings s;
  s.method = method;
  s.method_settings.eps = 0.1;
  s.lr = method == "gd" ? 0.2 : 0.02;
  s.steps = 30;
  s.record_every = 4;
  s.flows = method == "gd" ? std::vector<std::string>{"gf", "eom1", "eom2"} : std::vector<std::string>{"eom0", "eom1"};

  auto run = [&](RunControl* control, const DriverCheckpoint* from, test::RecordingSink& sink) {
    Model mlp = test::mlp_model(model.layers, Activation::tanh, LossKind::cross_entropy);
    const Vector theta0 = mlp.initial_parameters(1);
    const ObservableLayout layout = observable_layout(mlp, true, method == "adam");
    const WholeVector whole(mlp.n_params());
    ModelObjective objective(std::move(mlp), data, data.n_samples(), 0.01, whole);
    return run_synchronized(objective, theta0, s, layout, whole, sink, {}, control, from);
  };

  test::RecordingSink reference;
  const RunOutcome full = run(nullptr, nullptr, reference);
  ASSERT_EQ(full.status, RunStatus::complete);
  ASSERT_EQ(reference.records[1].trajectories[0]["preconditioned_sharpness"].size(), method == "adam" ? 1u : 0u);

  StopAt count(-1, 0);
  test::RecordingSink counted;
  run(&count, nullptr, counted);
  std::vector<StopAt> stops;
  for (long k : {1L, 5L, 8L, 13L, 29L}) stops.emplace_back(k, 1);
  for (long k : {0L, 8L, 20L})  // the last queries of record steps: the HVPs of both Lanczos runs
    for (long q = std::max(1L, count.queries[static_cast<std::size_t>(k)] - 12); q <= count.queries[static_cast<std::size_t>(k)]; ++q)
      stops.emplace_back(k, q);
  for (StopAt& control : stops) {
    const std::string stop = method + ", stop " + std::to_string(&control - stops.data());
    test::RecordingSink first, second;
    const RunOutcome interrupted = run(&control, nullptr, first);
    ASSERT_EQ(interrupted.status, RunStatus::interrupted) << stop;
    ASSERT_EQ(static_cast<std::size_t>(control.saved.records), first.records.size());
    const RunOutcome resumed = run(nullptr, &control.saved, second);
    EXPECT_EQ(resumed.status, RunStatus::complete);
    std::vector<test::StoredRecord> joined = first.records;
    joined.insert(joined.end(), second.records.begin(), second.records.end());
    ASSERT_EQ(joined.size(), reference.records.size()) << stop;
    for (std::size_t r = 0; r < joined.size(); ++r) {
      EXPECT_EQ(joined[r].step, reference.records[r].step);
      for (std::size_t t = 0; t < joined[r].trajectories.size(); ++t) {
        const auto& a = joined[r].trajectories[t];
        const auto& b = reference.records[r].trajectories[t];
        EXPECT_TRUE(same_bits(a.theta, b.theta)) << stop << " record " << r << " trajectory " << t;
        ASSERT_EQ(a.series.size(), b.series.size());
        for (std::size_t i = 0; i < a.series.size(); ++i)  // every observable, sharpnesses included
          EXPECT_EQ(std::memcmp(a.series[i].second.data(), b.series[i].second.data(), 8 * a.series[i].second.size()), 0)
              << stop << " record " << r << " trajectory " << t << " " << a.series[i].first.name;
      }
    }
    for (std::size_t t = 0; t < full.trajectories.size(); ++t)
      EXPECT_EQ(resumed.trajectories[t].evaluations, full.trajectories[t].evaluations) << "trajectory " << t;
  }
  }
}
