#include "model/dense_path.hpp"

#include <cmath>
#include <utility>

#include "model/activation.hpp"
#include "model/gemm.hpp"

namespace eomlab {
namespace {

// A row-major W (out x in) of the flat layout read in place as the column-major matrix Wᵀ (in x out).
Eigen::Map<const Matrix> transposed_weights(const Vector& flat, const DenseLayer& l) {
  return {flat.data() + l.w_offset, l.in, l.out};
}
Eigen::Map<Matrix> transposed_weights(Vector& flat, const DenseLayer& l) { return {flat.data() + l.w_offset, l.in, l.out}; }
Eigen::Map<const Vector> bias(const Vector& flat, const DenseLayer& l) { return {flat.data() + l.b_offset, l.out}; }
Eigen::Map<Vector> bias(Vector& flat, const DenseLayer& l) { return {flat.data() + l.b_offset, l.out}; }

// out = Σ_j m(:, j), column by column (contiguous; twice as fast as Eigen's rowwise().sum()).
void sum_columns(const Matrix& m, Eigen::Map<Vector> out) {
  out.setZero();
  for (Index j = 0; j < m.cols(); ++j) out += m.col(j);
}

}  // namespace

void DensePathPlan::add_dense(const DenseLayer& layer) {
  if (after_dense) reject();
  layers.push_back(layer);
  after_dense = true;
}

void DensePathPlan::add_activation(Activation a) {
  if (!after_dense || (activation && *activation != a)) reject();
  activation = a;
  after_dense = false;
}

DensePath::DensePath(const DensePathPlan& plan)
    : layers_(plan.layers),
      activation_kind_(plan.activation.value_or(Activation::tanh)),  // unused without hidden layers
      loss_(plan.loss.value()) {
  const std::size_t n = layers_.size();
  activation_.resize(n);
  for (auto* v : {&z_, &e_, &delta_, &z_dot_, &a_dot_, &e_dot_, &delta_dot_}) v->resize(n);
}

double DensePath::forward_and_head(const Vector& theta, const Dataset& batch, double scale) {
  const std::size_t n = layers_.size();
  for (std::size_t i = 0; i < n; ++i) {
    const DenseLayer& l = layers_[i];
    const Matrix& input = i == 0 ? batch.x : activation_[i - 1][0];
    Matrix& z = z_[i];
    z.resize(l.out, input.cols());
    z.colwise() = bias(theta, l);
    gemm(1.0, transposed_weights(theta, l), Op::transpose, input, Op::none, 1.0, z);
    if (i + 1 == n) break;
    apply_activation(activation_kind_, z, 2, activation_[i].data());
  }
  const Matrix& z = z_.back();
  Matrix& delta = delta_.back();
  double loss = 0.0;
  if (loss_ == LossKind::cross_entropy) {
    // Softmax with the column maximum subtracted; ℓ = log Σ exp(z - max) + max - z_label.
    column_max_ = z.colwise().maxCoeff();
    probabilities_.resize(z.rows(), z.cols());
    probabilities_.array() = (z.rowwise() - column_max_).array().exp();
    column_sum_ = probabilities_.colwise().sum();
    for (Index j = 0; j < z.cols(); ++j)
      loss += std::log(column_sum_[j]) + column_max_[j] -
              z(static_cast<Index>(batch.labels[static_cast<std::size_t>(j)]), j);
    probabilities_.array().rowwise() /= column_sum_.array();
    delta = scale * probabilities_;
    for (Index j = 0; j < z.cols(); ++j) delta(static_cast<Index>(batch.labels[static_cast<std::size_t>(j)]), j) -= scale;
  } else {
    delta = z - batch.targets;
    loss = 0.5 * delta.squaredNorm();
    delta *= scale;
  }
  return scale * loss;
}

void DensePath::backward(const Vector& theta, const Matrix& x, Vector* grad) {
  for (std::size_t i = layers_.size(); i-- > 0;) {
    const DenseLayer& l = layers_[i];
    if (grad) {
      const Matrix& input = i == 0 ? x : activation_[i - 1][0];
      gemm(1.0, input, Op::none, delta_[i], Op::transpose, 0.0, transposed_weights(*grad, l));  // (δ aᵀ)ᵀ in place
      sum_columns(delta_[i], bias(*grad, l));
    }
    if (i == 0) break;
    e_[i - 1].resize(l.in, x.cols());
    gemm(1.0, transposed_weights(theta, l), Op::none, delta_[i], Op::none, 0.0, e_[i - 1]);
    delta_[i - 1].array() = activation_[i - 1][1].array() * e_[i - 1].array();
  }
}

double DensePath::loss(const Vector& theta, const Dataset& batch, double scale) {
  primal_valid_ = false;
  return forward_and_head(theta, batch, scale);
}

double DensePath::primal(const Vector& theta, const Dataset& batch, double scale, Vector* grad) {
  primal_valid_ = false;
  const double loss = forward_and_head(theta, batch, scale);
  backward(theta, batch.x, grad);
  primal_valid_ = true;
  primal_scale_ = scale;
  return loss;
}

double DensePath::loss_and_gradient(const Vector& theta, const Dataset& batch, double scale, Vector& grad) {
  grad.resize(theta.size());
  return primal(theta, batch, scale, &grad);
}

void DensePath::hessian_vector(const Vector& theta, const Vector& v, const Dataset& batch, double scale, Vector& hv,
                               bool same_point) {
  if (!(same_point && primal_valid_ && primal_scale_ == scale)) primal(theta, batch, scale, nullptr);
  const std::size_t n = layers_.size();
  // Tangent forward: ż = V a + W ȧ + c, ȧ = σ'(z) ⊙ ż.
  for (std::size_t i = 0; i < n; ++i) {
    const DenseLayer& l = layers_[i];
    Matrix& z_dot = z_dot_[i];
    z_dot.resize(l.out, batch.x.cols());
    z_dot.colwise() = bias(v, l);
    gemm(1.0, transposed_weights(v, l), Op::transpose, i == 0 ? batch.x : activation_[i - 1][0], Op::none, 1.0, z_dot);
    if (i > 0) gemm(1.0, transposed_weights(theta, l), Op::transpose, a_dot_[i - 1], Op::none, 1.0, z_dot);
    if (i + 1 < n) a_dot_[i].array() = activation_[i][1].array() * z_dot.array();
  }
  // Tangent of the head's δ: scale·ṗ with ṗ = p ⊙ (ż - Σ_c p ż) for softmax, scale·ż for mse.
  const Matrix& z_dot = z_dot_.back();
  Matrix& head = delta_dot_.back();
  if (loss_ == LossKind::cross_entropy) {
    column_sum_ = (probabilities_.array() * z_dot.array()).colwise().sum();
    head.array() = scale * probabilities_.array() * (z_dot.rowwise() - column_sum_).array();
  } else {
    head = scale * z_dot;
  }
  // Tangent backward: Ḡ = ȧ δᵀ + a δ̇ᵀ, ė = Wᵀ δ̇ + Vᵀ δ, δ̇ = σ''(z) ż ⊙ e + σ'(z) ⊙ ė.
  hv.resize(theta.size());
  for (std::size_t i = n; i-- > 0;) {
    const DenseLayer& l = layers_[i];
    const auto h = transposed_weights(hv, l);
    gemm(1.0, i == 0 ? batch.x : activation_[i - 1][0], Op::none, delta_dot_[i], Op::transpose, 0.0, h);
    if (i > 0) gemm(1.0, a_dot_[i - 1], Op::none, delta_[i], Op::transpose, 1.0, h);
    sum_columns(delta_dot_[i], bias(hv, l));
    if (i == 0) break;
    Matrix& e_dot = e_dot_[i - 1];
    e_dot.resize(l.in, batch.x.cols());
    gemm(1.0, transposed_weights(theta, l), Op::none, delta_dot_[i], Op::none, 0.0, e_dot);
    gemm(1.0, transposed_weights(v, l), Op::none, delta_[i], Op::none, 1.0, e_dot);
    const auto& [a, d1, d2] = activation_[i - 1];
    delta_dot_[i - 1].array() = d2.array() * z_dot_[i - 1].array() * e_[i - 1].array() + d1.array() * e_dot.array();
  }
}

}  // namespace eomlab
