#include "diff/objective.hpp"

#include "core/error.hpp"

namespace eomlab {

MlpObjective::MlpObjective(Mlp model, Dataset local, Index n_total, double weight_decay, const Reducer& reducer)
    : model_(std::move(model)),
      local_(std::move(local)),
      scale_(1.0 / static_cast<double>(n_total)),
      weight_decay_(weight_decay),
      reducer_(reducer) {
  if (n_total <= 0) throw Error("MlpObjective: expected a non-empty data set");
}

double MlpObjective::value(const Vector& theta) {
  const double data_term = reducer_.sum(local_.n_samples() > 0 ? model_.loss_value(theta, local_, scale_) : 0.0);
  return data_term + 0.5 * weight_decay_ * theta.squaredNorm();
}

double MlpObjective::value_and_gradient(const Vector& theta, Vector& grad) {
  const Index p = model_.n_params();
  packed_.resize(p + 1);
  grad.resize(p);
  double local_loss = 0.0;
  if (local_.n_samples() > 0) {
    local_loss = model_.loss_and_gradient(theta, local_, scale_, grad);
  } else {
    grad.setZero();
  }
  packed_.head(p) = grad;
  packed_[p] = local_loss;
  reducer_.sum_in_place(packed_.data(), static_cast<std::size_t>(p + 1));
  grad = packed_.head(p) + weight_decay_ * theta;
  return packed_[p] + 0.5 * weight_decay_ * theta.squaredNorm();
}

void MlpObjective::hessian_vector(const Vector& theta, const Vector& v, Vector& hv) {
  if (local_.n_samples() > 0) {
    model_.hessian_vector(theta, v, local_, scale_, hv);
  } else {
    hv.setZero(model_.n_params());
  }
  reducer_.sum_in_place(hv.data(), static_cast<std::size_t>(hv.size()));
  hv += weight_decay_ * v;
}

void MlpObjective::third_order(const Vector& theta, const Vector& u, const Vector& v, Vector& out) {
  if (local_.n_samples() > 0) {
    model_.third_order(theta, u, v, local_, scale_, out);
  } else {
    out.setZero(model_.n_params());
  }
  reducer_.sum_in_place(out.data(), static_cast<std::size_t>(out.size()));
}

QuadraticObjective::QuadraticObjective(Matrix a, double weight_decay) : a_(std::move(a)), weight_decay_(weight_decay) {
  if (a_.rows() != a_.cols()) throw Error("QuadraticObjective: expected a square matrix");
}

double QuadraticObjective::value(const Vector& theta) {
  return 0.5 * theta.dot(a_ * theta) + 0.5 * weight_decay_ * theta.squaredNorm();
}

double QuadraticObjective::value_and_gradient(const Vector& theta, Vector& grad) {
  grad.noalias() = a_ * theta;
  grad += weight_decay_ * theta;
  return 0.5 * theta.dot(grad);
}

void QuadraticObjective::hessian_vector(const Vector&, const Vector& v, Vector& hv) {
  hv.noalias() = a_ * v;
  hv += weight_decay_ * v;
}

}  // namespace eomlab

namespace eomlab {

void QuadraticObjective::third_order(const Vector&, const Vector&, const Vector&, Vector& out) {
  out.setZero(a_.rows());
}

}  // namespace eomlab
