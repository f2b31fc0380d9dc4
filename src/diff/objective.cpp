#include "diff/objective.hpp"

#include "core/error.hpp"

namespace eomlab {

ModelObjective::ModelObjective(Model model, Dataset local, Index n_total, double weight_decay,
                               const SliceExchange& slices)
    : model_(std::move(model)),
      local_(std::move(local)),
      scale_(1.0 / static_cast<double>(n_total)),
      weight_decay_(weight_decay),
      slices_(slices) {
  if (n_total <= 0) throw Error("ModelObjective: expected a non-empty data set");
  if (slices.global_size() != model_.n_params()) throw Error("ModelObjective: slices do not match the model");
  model_.share_statistics(slices);
}

bool ModelObjective::evaluates_here() const { return local_.n_samples() > 0 || model_.couples_samples(); }

const Vector& ModelObjective::gathered_theta(const Vector& slice) {
  // The ranks agree whether θ changed anywhere (one rank's slice may be unchanged while another's is
  // not), so all of them gather, or skip, together.
  const bool changed_here = theta_slice_.size() != slice.size() || theta_slice_ != slice;
  if (slices_.sum(changed_here ? 1.0 : 0.0) > 0.0) {
    forward_pass_at_theta_ = false;
    theta_slice_ = slice;
    slices_.all_gather(slice, theta_);
  }
  return theta_;
}

double ModelObjective::weight_decay_term(const Vector& theta) const {
  return weight_decay_ == 0.0 ? 0.0 : 0.5 * weight_decay_ * theta.squaredNorm();
}

void ModelObjective::add_weight_decay(const Vector& x, Vector& out) const {
  if (weight_decay_ != 0.0) out += weight_decay_ * x;  // skipped at λ = 0: a pass over the slice
}

double ModelObjective::local_loss(const Vector& theta) {
  forward_pass_at_theta_ = false;  // a loss-only pass keeps no backward pass
  return evaluates_here() ? model_.loss_value(theta, local_, scale_) : 0.0;
}

double ModelObjective::value(const Vector& theta_slice) {
  const Vector& theta = gathered_theta(theta_slice);
  return slices_.sum(local_loss(theta)) + weight_decay_term(theta);
}

double ModelObjective::value_and_gradient(const Vector& theta_slice, Vector& grad) {
  const Vector& theta = gathered_theta(theta_slice);
  double loss = 0.0;
  if (evaluates_here()) {
    loss = model_.loss_and_gradient(theta, local_, scale_, whole_out_);
    forward_pass_at_theta_ = true;
  } else {
    whole_out_.setZero(model_.n_params());
  }
  slices_.reduce_scatter(whole_out_, grad);
  add_weight_decay(theta_slice, grad);
  return slices_.sum(loss) + weight_decay_term(theta);
}

void ModelObjective::hessian_vector(const Vector& theta_slice, const Vector& v, Vector& hv) {
  const Vector& theta = gathered_theta(theta_slice);
  slices_.all_gather(v, v_);
  if (evaluates_here()) {
    model_.hessian_vector(theta, v_, local_, scale_, whole_out_, forward_pass_at_theta_);
    forward_pass_at_theta_ = true;
  } else {
    whole_out_.setZero(model_.n_params());
  }
  slices_.reduce_scatter(whole_out_, hv);
  add_weight_decay(v, hv);
}

void ModelObjective::third_order(const Vector& theta_slice, const Vector& u, const Vector& v, Vector& out) {
  const Vector& theta = gathered_theta(theta_slice);
  slices_.all_gather(u, u_);
  slices_.all_gather(v, v_);
  if (evaluates_here()) {
    model_.third_order(theta, u_, v_, local_, scale_, whole_out_);
  } else {
    whole_out_.setZero(model_.n_params());
  }
  slices_.reduce_scatter(whole_out_, out);
}

void ModelObjective::hessian_and_third_order(const Vector& theta_slice, const Vector& u, Vector& hu, Vector& tuu) {
  const Vector& theta = gathered_theta(theta_slice);
  slices_.all_gather(u, u_);
  if (evaluates_here()) {
    model_.hessian_and_third_order(theta, u_, local_, scale_, whole_first_, whole_out_);
  } else {
    whole_first_.setZero(model_.n_params());
    whole_out_.setZero(model_.n_params());
  }
  slices_.reduce_scatter(whole_first_, hu);
  add_weight_decay(u, hu);
  slices_.reduce_scatter(whole_out_, tuu);
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
