// A labelled data set in memory, samples as columns: x is features x samples.
// Exactly one of labels (cross-entropy: class indices) and targets (mse: outputs x samples) is used.
#pragma once
#include <cstdint>
#include <vector>

#include "core/types.hpp"

namespace eomlab {

struct Dataset {
  Matrix x;
  std::vector<std::int64_t> labels;
  Matrix targets;

  Index n_samples() const { return x.cols(); }
  Index n_features() const { return x.rows(); }
  bool has_labels() const { return !labels.empty(); }
};

}  // namespace eomlab
