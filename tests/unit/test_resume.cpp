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

class StopAt final : public RunControl {
 public:
  explicit StopAt(long step) : step_(step) {}
  bool stop_requested(long step) override { return step == step_; }
  bool checkpoint_due(long) override { return false; }
  void save(const DriverCheckpoint& c) override { saved = c; }
  DriverCheckpoint saved;

 private:
  long step_;
};

bool same_bits(const Vector& a, const Vector& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(double) * static_cast<std::size_t>(a.size())) == 0;
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

TEST(Resume, StoppedAndContinuedRunsEqualTheUninterruptedRunBitwise) {
  ModelConfig model;
  model.layers = {4, 6, 3};
  const Dataset data = test::mixture(40, model.layers);
  DriverSettings s;
  s.lr = 0.2;
  s.steps = 30;
  s.record_every = 4;
  s.flows = {"gf", "eom1", "eom2"};

  auto run = [&](RunControl* control, const DriverCheckpoint* from, test::RecordingSink& sink) {
    Model mlp = test::mlp_model(model.layers, Activation::tanh, LossKind::cross_entropy);
    const Vector theta0 = mlp.initial_parameters(1);
    const ObservableLayout layout = observable_layout(mlp, true);
    const WholeVector whole(mlp.n_params());
    ModelObjective objective(std::move(mlp), data, data.n_samples(), 0.01, whole);
    return run_synchronized(objective, theta0, s, layout, whole, sink, {}, control, from);
  };

  test::RecordingSink reference;
  const RunOutcome full = run(nullptr, nullptr, reference);
  ASSERT_EQ(full.status, RunStatus::complete);

  for (long stop : {1L, 5L, 8L, 13L, 29L}) {
    StopAt control(stop);
    test::RecordingSink first, second;
    const RunOutcome interrupted = run(&control, nullptr, first);
    ASSERT_EQ(interrupted.status, RunStatus::interrupted);
    ASSERT_EQ(control.saved.step, stop);
    ASSERT_EQ(static_cast<std::size_t>(control.saved.records), first.records.size());
    const RunOutcome resumed = run(nullptr, &control.saved, second);
    EXPECT_EQ(resumed.status, RunStatus::complete);
    std::vector<test::StoredRecord> joined = first.records;
    joined.insert(joined.end(), second.records.begin(), second.records.end());
    ASSERT_EQ(joined.size(), reference.records.size()) << "stop " << stop;
    for (std::size_t r = 0; r < joined.size(); ++r) {
      EXPECT_EQ(joined[r].step, reference.records[r].step);
      for (std::size_t t = 0; t < joined[r].trajectories.size(); ++t) {
        const auto& a = joined[r].trajectories[t];
        const auto& b = reference.records[r].trajectories[t];
        EXPECT_TRUE(same_bits(a.theta, b.theta)) << "stop " << stop << " record " << r << " trajectory " << t;
        EXPECT_TRUE(same_bits(a.loss, b.loss));
        EXPECT_TRUE(same_bits(a.distance_to_gd, b.distance_to_gd));
        if (t == 0) {
          EXPECT_TRUE(same_bits(a.sharpness, b.sharpness)) << "stop " << stop << " record " << r;
        }
      }
    }
    for (std::size_t t = 0; t < full.trajectories.size(); ++t)
      EXPECT_EQ(resumed.trajectories[t].evaluations, full.trajectories[t].evaluations) << "trajectory " << t;
  }
}
