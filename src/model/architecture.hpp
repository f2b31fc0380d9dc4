// The text of model.architecture (DESIGN.md §3.6): "conv(32, 3, pad=1), tanh, avgpool(2), flatten,
// dense(10)". Layers are separated by the commas outside parentheses; a layer is a name with an optional
// parenthesised argument list, whose arguments are split the same way (so residual's arguments are
// layers themselves).
#pragma once
#include <string>
#include <vector>

#include "model/layer.hpp"

namespace eomlab {

// Throws Error naming the offending piece ("layer 3: expected NAME or NAME(ARGS), got 'conv(3'").
std::vector<LayerSpec> parse_architecture(const std::string& text);
// One layer's text, e.g. "dense(10, weightnorm=on)".
LayerSpec parse_layer(const std::string& text);

}  // namespace eomlab
