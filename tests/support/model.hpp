// The MLP configuration of Model (tests): widths, activation, loss and normalization, as the config gives them.
#pragma once
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

}  // namespace eomlab::test
