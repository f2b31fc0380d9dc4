// Synthetic data sets shaped for a network of the given widths (tests and benchmarks): a Gaussian
// mixture, and a teacher network's labels or targets (for mse as well as cross-entropy).
#pragma once
#include <vector>

#include "data/synthetic.hpp"

namespace eomlab::test {

inline Dataset mixture(Index samples, const std::vector<Index>& widths, std::uint64_t seed = 0) {
  DataConfig data;
  data.n_samples = samples;
  data.n_features = widths.front();
  data.n_classes = widths.back();
  data.seed = seed;
  ModelConfig model;
  model.layers = widths;
  return make_synthetic(data, model);
}

// Outputs of a random teacher network of these widths and activation, with noise 0.3: class labels
// for cross-entropy, targets for mse.
inline Dataset teacher(Index samples, const std::vector<Index>& widths, Activation activation, LossKind loss,
                       std::uint64_t seed) {
  DataConfig data;
  data.source = "teacher";
  data.n_samples = samples;
  data.n_features = widths.front();
  data.n_classes = widths.back();
  data.noise = 0.3;
  data.seed = seed;
  ModelConfig model;
  model.layers = widths;
  model.activation = activation;
  model.loss = loss;
  return make_synthetic(data, model);
}

}  // namespace eomlab::test
