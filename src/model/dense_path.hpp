// The fast path of Mlp's loss, gradient and Hessian-vector product, for networks without normalization.
//
// Every derivative level is plain GEMMs on θ in place (a row-major W is a column-major Wᵀ, so neither
// W nor its gradient is copied) plus fused elementwise passes; buffers are kept between calls, so no
// allocation happens once the shapes are known. The jet path (model/jet.hpp, Mlp's general code) is the
// reference: tests/unit/test_dense_path.cpp holds this one to it.
//
// The primal state of the last gradient or HVP (activations, σ', σ'', back-propagated δ) stays valid
// until the next evaluation; a Hessian-vector product told it is at the same θ and batch reuses it and
// runs only the tangent passes. The bits do not depend on whether it was reused.
#pragma once
#include <array>
#include <vector>

#include "core/config.hpp"
#include "core/dataset.hpp"
#include "core/types.hpp"
#include "model/mlp.hpp"

namespace eomlab {

class DensePath {
 public:
  DensePath(std::vector<DenseLayer> layers, Activation activation, LossKind loss);

  // Each returns scale * Σ ℓ over the batch, like Mlp's methods of the same names.
  double loss(const Vector& theta, const Dataset& batch, double scale);
  double loss_and_gradient(const Vector& theta, const Dataset& batch, double scale, Vector& grad);
  // With same_point, θ and the batch are those of the previous call (the caller guarantees it).
  void hessian_vector(const Vector& theta, const Vector& v, const Dataset& batch, double scale, Vector& hv,
                      bool same_point);

 private:
  std::vector<DenseLayer> layers_;
  Activation activation_kind_;
  LossKind loss_;
  bool primal_valid_ = false;
  double primal_scale_ = 0;
  // Per layer: pre-activations z; for hidden layers σ(z), σ'(z), σ''(z) and e = W_nextᵀ δ_next;
  // δ = ∂(scale Σℓ)/∂z. The tangent (directional derivative) of each, for the HVP. Every buffer keeps
  // one shape, so none is reallocated once the batch size is known.
  std::vector<std::array<Matrix, 3>> activation_;  // σ, σ', σ'' of hidden layers
  std::vector<Matrix> z_, e_, delta_;
  std::vector<Matrix> z_dot_, a_dot_, e_dot_, delta_dot_;
  Matrix probabilities_;
  Eigen::RowVectorXd column_max_, column_sum_;

  double forward_and_head(const Vector& theta, const Dataset& batch, double scale);
  void backward(const Vector& theta, const Matrix& x, Vector* grad);
  // Forward pass, head and backward pass (writing the gradient when grad is given): the primal state.
  double primal(const Vector& theta, const Dataset& batch, double scale, Vector* grad);
};

}  // namespace eomlab
