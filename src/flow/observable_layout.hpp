// The parts of θ that observables measure: every parameter block (W and b of each layer), the blocks on
// which the loss is scale-invariant and the translation directions of the output layer (DESIGN.md §1.4),
// and whether the sharpness is measured along the discrete trajectory.
#pragma once
#include <vector>

#include "model/model.hpp"

namespace eomlab {

struct ObservableLayout {
  std::vector<ParameterBlock> blocks;           // block_norms: ‖θ_A‖² of every W and b
  std::vector<ParameterBlock> scale_invariant;  // scale_invariant_norms: ‖θ_A‖² of each invariant block
  std::vector<ParameterSum> translation;        // translation_components: ⟨v, θ⟩ of each direction
  bool sharpness = false;                       // λ_max(H) along the discrete trajectory
  bool preconditioned_sharpness = false;        // and λ_max(P⁻¹H), for a preconditioned method
};

// The layout of a model: every parameter block, its invariant blocks, and the sharpness if asked for
// (with the preconditioned sharpness if the method is preconditioned).
inline ObservableLayout observable_layout(const Model& model, bool sharpness, bool preconditioned = false) {
  return {model.blocks(), model.scale_invariant_blocks(), model.translation_components(), sharpness,
          sharpness && preconditioned};
}

}  // namespace eomlab
