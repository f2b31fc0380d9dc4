// A dense multilayer perceptron with a flat parameter vector, and its exact derivatives: the
// implementation of the MLP configuration of Model (model/model.hpp), which the rest of the code sees.
//
// Flat layout (DESIGN.md §3.3): layer by layer from the input, W (out x in, row-major) then b (out).
// Loss of a batch: scale * Σ_i ℓ(x_i, y_i; θ), where ℓ is softmax cross-entropy
// (logsumexp(z) - z_y) or half the squared error ½‖z - t‖²; `scale` is 1/N_total for a shard of N_total.
// Weight decay is not part of this class (see diff/objective.hpp).
//
// Normalization of hidden layers (the output layer never is):
//   layer:  pre-activations z = W a + b are centred and scaled to unit variance across the layer's
//           neurons, per sample (no gain, no epsilon): the layer's (W, b) is jointly scale-invariant;
//   weight: each neuron uses w/‖w‖ for its weight row: each row is scale-invariant.
//
// Derivatives are forward-over-reverse at matrix level (model/jet.hpp): the reverse sweep that gives
// the gradient is run on jets in m directions, and its top component is the m-th directional
// derivative of the gradient: m = 0 gradient, m = 1 Hessian-vector product, m = 2 T[u, v]. This jet
// path is the reference; without normalization the loss, gradient and HVP take a fast path of plain
// GEMMs on θ in place (model/dense_path.hpp) that is tested against it.
// Not thread-safe: evaluations reuse a mutable workspace.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/dataset.hpp"
#include "core/types.hpp"
#include "model/model.hpp"

namespace eomlab {

struct DenseLayer {
  Index in = 0, out = 0;
  Index w_offset = 0, b_offset = 0;
};

class Mlp {
 public:
  Mlp(std::vector<Index> widths, Activation activation, LossKind loss,
      Normalization normalization = Normalization::none);
  ~Mlp();
  Mlp(Mlp&&) noexcept;
  Mlp& operator=(Mlp&&) noexcept;

  Index n_params() const { return n_params_; }
  Index n_inputs() const { return widths_.front(); }
  Index n_outputs() const { return widths_.back(); }
  const std::vector<Index>& widths() const { return widths_; }
  const std::vector<DenseLayer>& layers() const { return layers_; }
  Activation activation() const { return activation_; }
  LossKind loss() const { return loss_; }
  Normalization normalization() const { return normalization_; }
  bool is_normalized(std::size_t layer) const {
    return normalization_ != Normalization::none && layer + 1 < layers_.size();
  }
  std::vector<ParameterBlock> blocks() const;
  // Evaluate everything on the jet path, even where the fast path applies (to test one against the other).
  void use_reference_path(bool reference);
  // The blocks on which the loss is scale-invariant (DESIGN.md §1.4): with layer normalization each
  // hidden layer's (W, b), contiguous in the layout; with weight normalization each hidden neuron's
  // weight row. Empty without normalization.
  std::vector<ParameterBlock> scale_invariant_blocks() const;
  // The translation components of the output layer under softmax cross-entropy: for each input j the
  // class-sum Σ_c W[c, j], and the class-sum of b. Empty for mse (not invariant there).
  std::vector<ParameterSum> translation_components() const;

  // Default initialisation: W ~ N(0, 1/fan_in), b ~ N(0, 0.1²), from a portable RNG stream of `seed`.
  Vector initial_parameters(std::uint64_t seed) const;

  // Network outputs (n_outputs x samples).
  Matrix outputs(const Vector& theta, const Matrix& x) const;

  // Returns scale * Σ ℓ without derivatives.
  double loss_value(const Vector& theta, const Dataset& batch, double scale) const;
  // Returns scale * Σ ℓ; writes the gradient of that quantity to grad.
  double loss_and_gradient(const Vector& theta, const Dataset& batch, double scale, Vector& grad) const;
  // Writes (scale * Σ ∇²ℓ) v. With same_point the caller guarantees that θ and the batch are those of
  // this model's previous evaluation, whose forward pass may then be reused (same bits either way).
  void hessian_vector(const Vector& theta, const Vector& v, const Dataset& batch, double scale, Vector& hv,
                      bool same_point = false) const;
  // Writes (scale * Σ ∇³ℓ)[u, v].
  void third_order(const Vector& theta, const Vector& u, const Vector& v, const Dataset& batch, double scale,
                   Vector& out) const;
  // Hu and T[u, u] from one pass: the jet in directions (u, u) carries Hu in its first-order component.
  void hessian_and_third_order(const Vector& theta, const Vector& u, const Dataset& batch, double scale, Vector& hu,
                               Vector& tuu) const;

 private:
  struct Workspace;
  std::vector<Index> widths_;
  std::vector<DenseLayer> layers_;
  Activation activation_;
  LossKind loss_;
  Normalization normalization_;
  Index n_params_ = 0;
  std::unique_ptr<Workspace> ws_;

  void forward(const Vector& theta, const Vector* const* directions, int m, const Matrix& x) const;
  double head(const Dataset& batch, double scale) const;
  // Writes the top component of the gradient jet to out, and its component {direction 1} to first.
  void backward(Vector& out, Vector* first) const;
  double evaluate(const Vector& theta, const Vector* const* directions, int m, const Dataset& batch, double scale,
                  Vector* out, Vector* first = nullptr) const;
};

}  // namespace eomlab
