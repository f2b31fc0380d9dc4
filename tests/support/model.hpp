// Models for tests: the MLP configuration (widths, activation, loss and normalization, as the config
// gives them) and an architecture text.
#pragma once
#include <string>
#include <vector>

#include "model/model.hpp"

namespace eomlab::test {

inline Model mlp_model(const std::vector<Index>& widths, Activation activation, LossKind loss,
                       Normalization normalization = Normalization::none) {
  ModelConfig config;
  config.layers = widths;
  config.activation = activation;
  config.loss = loss;
  config.normalize = normalization;
  return make_model(config);
}

// A model of model.architecture's grammar for samples of shape `input`.
inline Model architecture_model(const std::string& architecture, const Shape& input, LossKind loss) {
  ModelConfig config;
  config.architecture = architecture;
  config.loss = loss;
  return make_model(config, input);
}

}  // namespace eomlab::test
