// Elementwise activations and their derivatives up to third order, applied to whole matrices.
#pragma once
#include "core/config.hpp"
#include "core/types.hpp"

namespace eomlab {

// Fills out[0] = σ(z), out[j] = σ^(j)(z) for j = 1..order (order <= 3). out must hold order+1 matrices;
// each is resized to z's shape.
void apply_activation(Activation a, const Matrix& z, int order, Matrix* out);

}  // namespace eomlab
