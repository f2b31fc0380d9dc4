// Layers applied one after another, each with its slice of θ in order: the body of a Model and of a
// residual block. It owns the layers' outputs (jets) between the forward pass and the backward pass.
// Invariant: layer k's input shape is layer k-1's output shape; the parameters of the layers tile
// [offset, offset + n_params()) in order.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model/held_size.hpp"
#include "model/layer.hpp"

namespace eomlab {

class LayerSequence {
 public:
  // Throws Error naming the failing layer by its position (from 1) and text: "layer 4 'dense(10)': ...".
  LayerSequence(const std::vector<LayerSpec>& specs, const Shape& in);

  Shape input_shape() const { return in_; }
  Shape output_shape() const { return layers_.back()->output_shape(); }
  Index n_params() const { return n_params_; }
  // "dense(32), tanh, dense(4)".
  std::string text() const;
  const Layer& last() const { return *layers_.back(); }
  const std::vector<std::unique_ptr<Layer>>& layers() const { return layers_; }
  bool couples_samples() const;
  Index activation_size() const;  // Σ of the layers' activation sizes
  // Σ of the layers' held sizes (layer.hpp), but for the outputs of a conv and an activation fused by
  // planes, which are not kept, plus the δ jet and its spare at the largest output a δ is formed for.
  HeldSize held_size() const;
  HeldParameters held_parameters() const;  // the layers' (Layer::held_parameters) together

  // Parametrized layers are named prefix + their count among them: "layer0", "layer1", ...
  void place(Index offset, const std::string& prefix);
  std::vector<ParameterBlock> blocks() const;
  // The layers' own invariant blocks, and those of a linear layer followed by a normalization.
  std::vector<ParameterBlock> scale_invariant_blocks() const;
  void initialize(Rng& rng, Vector& theta) const;

  void forward(const ForwardPass& pass, const Jet& in, Scratch& s);
  const Jet& output() const { return values_.back(); }
  // `delta` (the jet of ∂loss/∂output) is consumed; on return it holds ∂loss/∂input if `input_delta`.
  // Without it, the pass stops at the first layer with parameters (nothing below needs a δ).
  void backward(const BackwardPass& pass, const Jet& in, Jet& delta, bool input_delta, Scratch& s);

 private:
  // Whether layer k and the two after it can run by planes (the forward pass tries it when it may fuse).
  bool planes_from(std::size_t k) const;

  Shape in_;
  Index n_params_ = 0;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::size_t first_parametrized_ = 0;  // layers_.size() when none has parameters
  std::vector<Jet> values_;  // each layer's output
  // Whether the last forward pass ran layer k and the two after it by planes (layer.hpp's PlaneSink):
  // then values_[k] and values_[k + 1] are not kept, and the backward pass must fuse the three.
  std::vector<char> by_planes_;
  Jet spare_, plane_;
};

}  // namespace eomlab
