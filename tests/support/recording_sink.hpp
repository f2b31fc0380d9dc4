// A RecordSink that keeps every record in memory (tests of the driver without HDF5).
#pragma once
#include <vector>

#include "flow/driver.hpp"

namespace eomlab::test {

struct StoredTrajectory {
  Vector theta;
  double loss, grad_norm, distance_to_gd;
  std::vector<double> block_norms, scale_invariant_norms, translation_components;
  double sharpness;
};

struct StoredRecord {
  long step;
  double time;
  std::vector<StoredTrajectory> trajectories;
};

class RecordingSink final : public RecordSink {
 public:
  void append(const Record& r) override {
    StoredRecord s{r.step, r.time, {}};
    for (const TrajectoryState& t : r.trajectories)
      s.trajectories.push_back({*t.theta, t.loss, t.grad_norm, t.distance_to_gd, t.block_norms,
                                t.scale_invariant_norms, t.translation_components, t.sharpness});
    records.push_back(std::move(s));
  }
  std::vector<StoredRecord> records;
};

}  // namespace eomlab::test
