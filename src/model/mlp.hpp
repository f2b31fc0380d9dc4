// The MLP configuration of a Model (DESIGN.md §3.2): model.layers, model.activation and model.normalize
// as a layer sequence (model/layer.hpp). Widths w_0 (the input), w_1, ..., w_L give dense(w_1), ...,
// dense(w_L); every hidden dense layer (all but the last) is followed by layernorm when normalize =
// layer, or is dense(w_i, weightnorm=on) when normalize = weight, and then by the activation. The flat
// layout is therefore layer by layer from the input, W (out x in, row-major) then b (out).
#pragma once
#include <vector>

#include "core/config.hpp"
#include "model/layer.hpp"

namespace eomlab {

// Throws Error for fewer than two widths.
std::vector<LayerSpec> mlp_architecture(const ModelConfig& config);

}  // namespace eomlab
