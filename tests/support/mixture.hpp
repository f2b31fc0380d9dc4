// A Gaussian-mixture data set shaped for a network of the given widths (tests and benchmarks).
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

}  // namespace eomlab::test
