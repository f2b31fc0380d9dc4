#include "diff/objective.hpp"

#include "core/error.hpp"

namespace eomlab {

std::unique_ptr<Objective> Objective::restricted(const std::vector<Index>&) {
  throw Error("Objective::restricted: this loss is not a mean over samples (it has no minibatches)");
}

ModelObjective::ModelObjective(Model model, Dataset local, Index n_total, double weight_decay,
                               const SliceExchange& slices, Index first_sample)
    : model_(std::move(model)),
      local_(std::move(local)),
      n_total_(n_total),
      first_sample_(first_sample),
      scale_(1.0 / static_cast<double>(n_total)),
      weight_decay_(weight_decay),
      slices_(slices) {
  if (n_total <= 0) throw Error("ModelObjective: expected a non-empty data set");
  if (first_sample < 0 || first_sample + local_.n_samples() > n_total)
    throw Error("ModelObjective: the shard's samples lie outside the data set");
  if (slices.global_size() != model_.n_params()) throw Error("ModelObjective: slices do not match the model");
  model_.share_statistics(slices);
}

// A minibatch: the batch's samples of this rank's shard, evaluated by its ModelObjective with scale
// 1/(batch size), so each evaluation is the same local sum and reduction as the whole loss's.
class ModelObjective::Batch final : public Objective {
 public:
  Batch(ModelObjective& whole, Dataset data, Index size)
      : whole_(whole), data_(std::move(data)), scale_(1.0 / static_cast<double>(size)), id_(++whole.parts_made_) {}
  Index dimension() const override { return whole_.dimension(); }
  double value(const Vector& theta) override { return whole_.value(part(), theta); }
  double value_and_gradient(const Vector& theta, Vector& grad) override {
    return whole_.value_and_gradient(part(), theta, grad);
  }
  void hessian_vector(const Vector& theta, const Vector& v, Vector& hv) override {
    whole_.hessian_vector(part(), theta, v, hv);
  }
  void third_order(const Vector& theta, const Vector& u, const Vector& v, Vector& out) override {
    whole_.third_order(part(), theta, u, v, out);
  }
  void hessian_and_third_order(const Vector& theta, const Vector& u, Vector& hu, Vector& tuu) override {
    whole_.hessian_and_third_order(part(), theta, u, hu, tuu);
  }

 private:
  Part part() const { return {data_, scale_, id_}; }
  ModelObjective& whole_;
  Dataset data_;
  double scale_;
  long id_;
};

std::unique_ptr<Objective> ModelObjective::restricted(const std::vector<Index>& batch) {
  if (batch.empty()) throw Error("ModelObjective::restricted: expected a non-empty batch");
  std::vector<Index> mine;  // local columns, in the batch's order
  for (const Index i : batch) {
    if (i < 0 || i >= n_total_) throw Error("ModelObjective::restricted: sample index out of range");
    if (i >= first_sample_ && i < first_sample_ + local_.n_samples()) mine.push_back(i - first_sample_);
  }
  Dataset d;
  d.sample_shape = local_.sample_shape;
  d.x.resize(local_.x.rows(), static_cast<Index>(mine.size()));
  if (!local_.has_labels()) d.targets.resize(local_.targets.rows(), static_cast<Index>(mine.size()));
  for (std::size_t c = 0; c < mine.size(); ++c) {
    const Index col = static_cast<Index>(c);
    d.x.col(col) = local_.x.col(mine[c]);
    if (local_.has_labels())
      d.labels.push_back(local_.labels[static_cast<std::size_t>(mine[c])]);
    else
      d.targets.col(col) = local_.targets.col(mine[c]);
  }
  return std::make_unique<Batch>(*this, std::move(d), static_cast<Index>(batch.size()));
}

bool ModelObjective::evaluates_here(const Part& part) const {
  return part.data.n_samples() > 0 || model_.couples_samples();
}

const Vector& ModelObjective::gathered_theta(const Vector& slice) {
  // The ranks agree whether θ changed anywhere (one rank's slice may be unchanged while another's is
  // not), so all of them gather, or skip, together.
  const bool changed_here = theta_slice_.size() != slice.size() || theta_slice_ != slice;
  if (slices_.sum(changed_here ? 1.0 : 0.0) > 0.0) {
    ++point_;
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

double ModelObjective::local_loss(const Part& part, const Vector& theta) {
  return evaluates_here(part) ? model_.loss_value(theta, part.data, part.scale) : 0.0;
}

double ModelObjective::value(const Vector& theta_slice) { return value(whole_shard(), theta_slice); }
double ModelObjective::value_and_gradient(const Vector& theta_slice, Vector& grad) {
  return value_and_gradient(whole_shard(), theta_slice, grad);
}
void ModelObjective::hessian_vector(const Vector& theta_slice, const Vector& v, Vector& hv) {
  hessian_vector(whole_shard(), theta_slice, v, hv);
}
void ModelObjective::third_order(const Vector& theta_slice, const Vector& u, const Vector& v, Vector& out) {
  third_order(whole_shard(), theta_slice, u, v, out);
}
void ModelObjective::hessian_and_third_order(const Vector& theta_slice, const Vector& u, Vector& hu, Vector& tuu) {
  hessian_and_third_order(whole_shard(), theta_slice, u, hu, tuu);
}

double ModelObjective::value(const Part& part, const Vector& theta_slice) {
  const Vector& theta = gathered_theta(theta_slice);
  return slices_.sum(local_loss(part, theta)) + weight_decay_term(theta);
}

double ModelObjective::value_and_gradient(const Part& part, const Vector& theta_slice, Vector& grad) {
  const Vector& theta = gathered_theta(theta_slice);
  double loss = 0.0;
  if (evaluates_here(part)) {
    loss = model_.loss_and_gradient(theta, part.data, part.scale, whole_out_, {point_, part.id});
  } else {
    whole_out_.setZero(model_.n_params());
  }
  slices_.reduce_scatter(whole_out_, grad);
  add_weight_decay(theta_slice, grad);
  return slices_.sum(loss) + weight_decay_term(theta);
}

void ModelObjective::hessian_vector(const Part& part, const Vector& theta_slice, const Vector& v, Vector& hv) {
  const Vector& theta = gathered_theta(theta_slice);
  slices_.all_gather(v, v_);
  if (evaluates_here(part)) {
    model_.hessian_vector(theta, v_, part.data, part.scale, whole_out_, {point_, part.id});
  } else {
    whole_out_.setZero(model_.n_params());
  }
  slices_.reduce_scatter(whole_out_, hv);
  add_weight_decay(v, hv);
}

void ModelObjective::third_order(const Part& part, const Vector& theta_slice, const Vector& u, const Vector& v,
                                 Vector& out) {
  const Vector& theta = gathered_theta(theta_slice);
  slices_.all_gather(u, u_);
  slices_.all_gather(v, v_);
  if (evaluates_here(part)) {
    model_.third_order(theta, u_, v_, part.data, part.scale, whole_out_);
  } else {
    whole_out_.setZero(model_.n_params());
  }
  slices_.reduce_scatter(whole_out_, out);
}

void ModelObjective::hessian_and_third_order(const Part& part, const Vector& theta_slice, const Vector& u, Vector& hu,
                                             Vector& tuu) {
  const Vector& theta = gathered_theta(theta_slice);
  slices_.all_gather(u, u_);
  if (evaluates_here(part)) {
    model_.hessian_and_third_order(theta, u_, part.data, part.scale, whole_first_, whole_out_);
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
