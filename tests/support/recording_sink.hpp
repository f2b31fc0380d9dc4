// A RecordSink that keeps every record in memory (tests of the driver without HDF5).
#pragma once
#include <limits>
#include <string>
#include <vector>

#include "flow/driver.hpp"

namespace eomlab::test {

struct StoredTrajectory {
  Vector theta;
  double loss, grad_norm, distance_to_gd;
  std::vector<double> block_norms, scale_invariant_norms, translation_components;
  double sharpness;
  std::vector<std::pair<SeriesShape, std::vector<double>>> series;  // every series by name
  // The values of series `name` (empty when the trajectory has none).
  std::vector<double> operator[](const std::string& name) const {
    for (const auto& [shape, values] : series)
      if (shape.name == name) return values;
    return {};
  }
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
    for (std::size_t t = 0; t < r.trajectories.size(); ++t) {
      StoredTrajectory stored;
      stored.theta = *r.trajectories[t].theta;
      const double* values = r.trajectories[t].values.data();
      for (const SeriesShape& shape : (*r.layout)[t].series) {
        const std::size_t n = static_cast<std::size_t>(shape.width == 0 ? 1 : shape.width);
        stored.series.push_back({shape, std::vector<double>(values, values + n)});
        values += n;
      }
      stored.loss = scalar(stored, "loss");
      stored.grad_norm = scalar(stored, "grad_norm");
      stored.distance_to_gd = t == 0 ? 0.0 : scalar(stored, "distance_to_discrete");
      stored.block_norms = stored["block_norms"];
      stored.scale_invariant_norms = stored["scale_invariant_norms"];
      stored.translation_components = stored["translation_components"];
      stored.sharpness = t == 0 ? scalar(stored, "sharpness") : 0.0;
      s.trajectories.push_back(std::move(stored));
    }
    records.push_back(std::move(s));
  }
  std::vector<StoredRecord> records;

 private:
  static double scalar(const StoredTrajectory& t, const std::string& name) {
    const std::vector<double> v = t[name];
    return v.empty() ? std::numeric_limits<double>::quiet_NaN() : v[0];
  }
};

}  // namespace eomlab::test
