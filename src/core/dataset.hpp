// A labelled data set in memory, samples as columns: x is features x samples.
// Exactly one of labels (cross-entropy: class indices) and targets (mse: outputs x samples) is used.
// Images are stored one sample per column in the order of `shape` (core/shape.hpp); a data set without
// a shape is a vector of n_features() features.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/shape.hpp"
#include "core/types.hpp"

namespace eomlab {

struct Dataset {
  Matrix x;
  std::vector<std::int64_t> labels;
  Matrix targets;
  Shape sample_shape;  // channels 0: a vector of n_features()
  // Where x is computed from values stored otherwise (an image source's pixel bytes, normalized), their
  // fingerprint (Fingerprint::hex, core/fingerprint.hpp), the same on every build; "": x is as stored.
  std::string stored_fingerprint;

  Shape shape() const { return sample_shape.channels == 0 ? Shape(n_features()) : sample_shape; }

  Index n_samples() const { return x.cols(); }
  Index n_features() const { return x.rows(); }
  bool has_labels() const { return !labels.empty(); }
};

// Values a loss can take (data, targets, initial parameters): finite and of magnitude at most 1e150;
// beyond, their squares and products overflow (a batchnorm's variance, a loss's squares, HVPs then NaN).
// "" if every value of m is so, else what was found ("NaN or Inf", "values up to 1e+160").
constexpr double max_value_magnitude = 1e150;
constexpr const char* usable_values_text = "finite values of magnitude at most 1e150";
std::string unusable_values(const Eigen::Ref<const Matrix>& m);

}  // namespace eomlab
