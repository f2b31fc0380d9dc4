#include "model/mlp.hpp"

#include "core/error.hpp"

namespace eomlab {

std::vector<LayerSpec> mlp_architecture(const ModelConfig& config) {
  const std::vector<Index>& widths = config.layers;
  if (widths.size() < 2) throw Error("model.layers: expected at least two widths");
  std::vector<LayerSpec> layers;
  for (std::size_t i = 1; i < widths.size(); ++i) {
    const bool hidden = i + 1 < widths.size();
    LayerSpec dense{"dense", {std::to_string(widths[i])}};
    if (hidden && config.normalize == Normalization::weight) dense.args.push_back("weightnorm=on");
    layers.push_back(dense);
    if (!hidden) break;
    if (config.normalize == Normalization::layer) layers.push_back({"layernorm", {}});
    layers.push_back({to_string(config.activation), {}});
  }
  return layers;
}

}  // namespace eomlab
