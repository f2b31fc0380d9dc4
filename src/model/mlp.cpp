#include "model/mlp.hpp"

#include <array>
#include <cmath>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "model/activation.hpp"

namespace eomlab {
namespace {

using ConstWeights = Eigen::Map<const RowMajorMatrix>;
using Weights = Eigen::Map<RowMajorMatrix>;

}  // namespace

struct Mlp::Workspace {
  std::vector<Matrix> z;                  // pre-activations of each layer
  std::vector<std::array<Matrix, 3>> act;  // hidden layer i: σ(z), σ'(z), σ''(z)
  Matrix prob;                            // softmax probabilities (cross-entropy)
  std::vector<Matrix> delta;              // ∂(scaled loss)/∂z per layer
  std::vector<Matrix> zdot, adot, deltadot;  // tangents along the HVP direction
  Matrix back, backdot;                   // Wᵀδ and its tangent
};

Mlp::Mlp(std::vector<Index> widths, Activation activation, LossKind loss)
    : widths_(std::move(widths)), activation_(activation), loss_(loss), ws_(std::make_unique<Workspace>()) {
  if (widths_.size() < 2) throw Error("Mlp: expected at least two layer widths");
  Index offset = 0;
  for (std::size_t i = 0; i + 1 < widths_.size(); ++i) {
    DenseLayer l;
    l.in = widths_[i];
    l.out = widths_[i + 1];
    l.w_offset = offset;
    l.b_offset = offset + l.in * l.out;
    offset = l.b_offset + l.out;
    layers_.push_back(l);
  }
  n_params_ = offset;
  const std::size_t n = layers_.size();
  ws_->z.resize(n);
  ws_->act.resize(n);
  ws_->delta.resize(n);
  ws_->zdot.resize(n);
  ws_->adot.resize(n);
  ws_->deltadot.resize(n);
}

Mlp::~Mlp() = default;
Mlp::Mlp(Mlp&&) noexcept = default;
Mlp& Mlp::operator=(Mlp&&) noexcept = default;

std::vector<ParameterBlock> Mlp::blocks() const {
  std::vector<ParameterBlock> out;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const DenseLayer& l = layers_[i];
    out.push_back({"layer" + std::to_string(i) + ".W", l.w_offset, l.in * l.out, l.out, l.in});
    out.push_back({"layer" + std::to_string(i) + ".b", l.b_offset, l.out, l.out, 1});
  }
  return out;
}

Vector Mlp::initial_parameters(std::uint64_t seed) const {
  Rng rng(seed, rng_stream::init);
  Vector theta(n_params_);
  for (const DenseLayer& l : layers_) {
    const double w_std = 1.0 / std::sqrt(static_cast<double>(l.in));
    for (Index k = 0; k < l.in * l.out; ++k) theta[l.w_offset + k] = w_std * rng.normal();
    for (Index k = 0; k < l.out; ++k) theta[l.b_offset + k] = 0.1 * rng.normal();
  }
  return theta;
}

void Mlp::forward(const Vector& theta, const Matrix& x, int derivative_order) const {
  Workspace& w = *ws_;
  const std::size_t n = layers_.size();
  for (std::size_t i = 0; i < n; ++i) {
    const DenseLayer& l = layers_[i];
    const Matrix& input = i == 0 ? x : w.act[i - 1][0];
    ConstWeights W(theta.data() + l.w_offset, l.out, l.in);
    w.z[i].resize(l.out, x.cols());
    w.z[i].noalias() = W * input;
    w.z[i].colwise() += theta.segment(l.b_offset, l.out);
    if (i + 1 < n) apply_activation(activation_, w.z[i], derivative_order, w.act[i].data());
  }
}

double Mlp::output_loss(const Dataset& batch, double scale, bool want_delta) const {
  Workspace& w = *ws_;
  const Matrix& z = w.z.back();
  Matrix& delta = w.delta.back();
  double loss = 0.0;
  if (loss_ == LossKind::cross_entropy) {
    const Eigen::RowVectorXd m = z.colwise().maxCoeff();
    w.prob = (z.rowwise() - m).array().exp().matrix();
    const Eigen::RowVectorXd sums = w.prob.colwise().sum();
    w.prob.array().rowwise() /= sums.array();
    for (Index i = 0; i < z.cols(); ++i)
      loss += std::log(sums[i]) + m[i] - z(static_cast<Index>(batch.labels[static_cast<std::size_t>(i)]), i);
    if (want_delta) {
      delta = w.prob;
      for (Index i = 0; i < z.cols(); ++i) delta(static_cast<Index>(batch.labels[static_cast<std::size_t>(i)]), i) -= 1.0;
      delta *= scale;
    }
  } else {
    delta = z - batch.targets;
    loss = 0.5 * delta.squaredNorm();
    if (want_delta) delta *= scale;
  }
  return scale * loss;
}

Matrix Mlp::outputs(const Vector& theta, const Matrix& x) const {
  forward(theta, x, 0);
  return ws_->z.back();
}

double Mlp::loss_value(const Vector& theta, const Dataset& batch, double scale) const {
  forward(theta, batch.x, 0);
  return output_loss(batch, scale, false);
}

double Mlp::loss_and_gradient(const Vector& theta, const Dataset& batch, double scale, Vector& grad) const {
  Workspace& w = *ws_;
  forward(theta, batch.x, 1);
  const double loss = output_loss(batch, scale, true);
  grad.resize(n_params_);
  for (std::size_t i = layers_.size(); i-- > 0;) {
    const DenseLayer& l = layers_[i];
    const Matrix& input = i == 0 ? batch.x : w.act[i - 1][0];
    Weights G(grad.data() + l.w_offset, l.out, l.in);
    G.noalias() = w.delta[i] * input.transpose();
    grad.segment(l.b_offset, l.out) = w.delta[i].rowwise().sum();
    if (i > 0) {
      ConstWeights W(theta.data() + l.w_offset, l.out, l.in);
      w.back.noalias() = W.transpose() * w.delta[i];
      w.delta[i - 1] = w.act[i - 1][1].cwiseProduct(w.back);
    }
  }
  return loss;
}

void Mlp::hessian_vector(const Vector& theta, const Vector& v, const Dataset& batch, double scale,
                         Vector& hv) const {
  Workspace& w = *ws_;
  const std::size_t n = layers_.size();
  forward(theta, batch.x, 2);
  output_loss(batch, scale, true);

  // Forward tangents: ż = V a + W ȧ + c, ȧ = σ'(z) ż.
  for (std::size_t i = 0; i < n; ++i) {
    const DenseLayer& l = layers_[i];
    const Matrix& input = i == 0 ? batch.x : w.act[i - 1][0];
    ConstWeights W(theta.data() + l.w_offset, l.out, l.in);
    ConstWeights V(v.data() + l.w_offset, l.out, l.in);
    w.zdot[i].resize(l.out, batch.x.cols());
    w.zdot[i].noalias() = V * input;
    if (i > 0) w.zdot[i].noalias() += W * w.adot[i - 1];
    w.zdot[i].colwise() += v.segment(l.b_offset, l.out);
    if (i + 1 < n) w.adot[i] = w.act[i][1].cwiseProduct(w.zdot[i]);
  }

  // Tangent of the output delta: scale * ∇²ℓ(z) ż.
  const Matrix& zdot_out = w.zdot.back();
  Matrix& ddot = w.deltadot.back();
  if (loss_ == LossKind::cross_entropy) {
    ddot = w.prob.cwiseProduct(zdot_out);
    const Eigen::RowVectorXd pz = ddot.colwise().sum();
    ddot -= w.prob * pz.asDiagonal();
    ddot *= scale;
  } else {
    ddot = scale * zdot_out;
  }

  // Reverse sweep differentiated along v.
  hv.resize(n_params_);
  for (std::size_t i = n; i-- > 0;) {
    const DenseLayer& l = layers_[i];
    const Matrix& input = i == 0 ? batch.x : w.act[i - 1][0];
    Weights HW(hv.data() + l.w_offset, l.out, l.in);
    HW.noalias() = w.deltadot[i] * input.transpose();
    if (i > 0) HW.noalias() += w.delta[i] * w.adot[i - 1].transpose();
    hv.segment(l.b_offset, l.out) = w.deltadot[i].rowwise().sum();
    if (i > 0) {
      ConstWeights W(theta.data() + l.w_offset, l.out, l.in);
      ConstWeights V(v.data() + l.w_offset, l.out, l.in);
      w.back.noalias() = W.transpose() * w.delta[i];
      w.backdot.noalias() = V.transpose() * w.delta[i];
      w.backdot.noalias() += W.transpose() * w.deltadot[i];
      const std::array<Matrix, 3>& a = w.act[i - 1];
      w.delta[i - 1] = a[1].cwiseProduct(w.back);
      w.deltadot[i - 1] = a[2].cwiseProduct(w.zdot[i - 1]).cwiseProduct(w.back) + a[1].cwiseProduct(w.backdot);
    }
  }
}

}  // namespace eomlab
