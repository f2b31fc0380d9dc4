#include "diff/objective.hpp"

#include <algorithm>
#include <cstring>

#include "core/error.hpp"
#include "model/gemm.hpp"

namespace eomlab {

std::unique_ptr<Objective> Objective::restricted(const std::vector<Index>&) {
  throw Error("Objective::restricted: this loss is not a mean over samples (it has no minibatches)");
}

std::unique_ptr<BatchPartition> Objective::partitioned(const std::vector<std::vector<Index>>& batches) {
  if (samples() == 0) restricted({});  // throws: no minibatches
  return std::make_unique<BatchPartition>(*this, batches);
}

BatchPartition::BatchPartition(Objective& whole, std::vector<std::vector<Index>> batches)
    : whole_(whole), lists_(std::move(batches)) {}

Objective& BatchPartition::batch(long k) {
  if (batches_.empty())
    for (const auto& list : lists_) batches_.push_back(whole_.restricted(list));
  return *batches_.at(static_cast<std::size_t>(k));
}

void BatchPartition::gradients(const Vector& theta, std::vector<Vector>& g) {
  g.resize(lists_.size());
  for (std::size_t k = 0; k < lists_.size(); ++k) batch(static_cast<long>(k)).value_and_gradient(theta, g[k]);
}

bool BatchPartition::prefix_direction_sum(const Vector&, Vector&, Vector&) { return false; }

void BatchPartition::hessian_vector_sum(const Vector& theta, const std::vector<const Vector*>& v, Vector& out) {
  if (v.size() != lists_.size()) throw Error("BatchPartition::hessian_vector_sum: expected one direction per batch");
  out.setZero(theta.size());
  for (std::size_t k = lists_.size(); k-- > 0;) {
    batch(static_cast<long>(k)).hessian_vector(theta, *v[k], hv_);
    out += hv_;
  }
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
  const Index outputs = model_.n_outputs();
  if (!local_.has_labels() && local_.n_samples() > 0 && local_.targets.rows() != outputs)
    throw Error("ModelObjective: expected targets as wide as the model's " + std::to_string(outputs) + " outputs, got " +
                std::to_string(local_.targets.rows()));
  for (std::int64_t label : local_.labels)
    if (label < 0 || label >= outputs)
      throw Error("ModelObjective: expected labels in [0, " + std::to_string(outputs) + "), got " + std::to_string(label));
  model_.share_statistics(slices);
}

// A minibatch: the batch's samples of this rank's shard, evaluated by its ModelObjective with scale
// 1/(batch size), so each evaluation is the same local sum and reduction as the whole loss's.
class ModelObjective::Batch final : public Objective {
 public:
  Batch(ModelObjective& whole, Dataset data, Index size)
      : whole_(whole),
        data_(std::move(data)),
        scale_(1.0 / static_cast<double>(size)),
        name_(whole.names_) {}
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;
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
  Part part() const { return {data_, scale_, name_.id}; }
  ModelObjective& whole_;
  Dataset data_;
  double scale_;
  PartName name_;
};

// The batches of a partition laid out one after another as blocks of one data set (this rank's samples
// of each), evaluated by the model in one pass: m batch gradients, then Σ_k H_k v_k, at one θ (the second
// reuses the first's forward and backward passes, PassKey). Batches of equal size b: each block's scale is 1/b.
class ModelObjective::Partition final : public BatchPartition {
 public:
  Partition(ModelObjective& whole, const std::vector<std::vector<Index>>& batches)
      : BatchPartition(whole, batches), whole_(whole), scale_(1.0 / static_cast<double>(batches.front().size())),
        name_(whole.names_) {}
  Partition(const Partition&) = delete;
  Partition& operator=(const Partition&) = delete;

  void gradients(const Vector& theta_slice, std::vector<Vector>& g) override {
    lay_out();
    const Vector& theta = whole_.gathered_theta(theta_slice);
    const std::size_t m = ends_.size();
    g.resize(m);
    wholes_.resize(m);
    const bool direct = whole_.slice_is_whole();
    outputs_.clear();
    for (std::size_t k = 0; k < m; ++k) outputs_.push_back(direct ? &g[k] : &wholes_[k]);
    if (whole_.evaluates_here(part()))
      whole_.model_.block_gradients(theta, data_, ends_, scale_, outputs_, {name_.names->point, name_.id});
    else
      for (Vector* o : outputs_) o->setZero(whole_.model_.n_params());
    for (std::size_t k = 0; k < m; ++k) {
      if (!direct) whole_.slices_.reduce_scatter(wholes_[k], g[k]);
      whole_.add_weight_decay(theta_slice, g[k]);
    }
  }

  void hessian_vector_sum(const Vector& theta_slice, const std::vector<const Vector*>& v, Vector& out) override {
    lay_out();
    if (v.size() != ends_.size()) throw Error("BatchPartition::hessian_vector_sum: expected one direction per batch");
    const Vector& theta = whole_.gathered_theta(theta_slice);
    wholes_.resize(v.size());
    directions_.clear();
    for (std::size_t k = 0; k < v.size(); ++k) directions_.push_back(&whole_.gathered(*v[k], wholes_[k]));
    Vector& sum = whole_.whole_out_;
    if (whole_.evaluates_here(part()))
      whole_.model_.hessian_vector_sum(theta, directions_, data_, ends_, scale_, sum, {name_.names->point, name_.id});
    else
      sum.setZero(whole_.model_.n_params());
    whole_.slices_.reduce_scatter(sum, out);
    for (const Vector* x : v) whole_.add_weight_decay(*x, out);
  }

  // On one rank holding all samples, where partition_path says so: the first layer through the data's Gram matrix
  // (Model::prefix_direction_sum), about 2·out·N² operations instead of 4·out·in·N in m pieces of b
  // columns, which run below the BLAS's rate when b is small (BENCHMARKS.md, the reference network: 20%
  // faster at b = 32, 10% at 64, even at 128, slower at 256). With weight decay λ, g_k = g_k^d + λθ and
  // H_k = H_k^d + λI, so u_k = w_k + c_kθ with c_k = λ(k − m/2), and
  // Σ_k H_k u_k = Σ_k H_k^d w_k + λ Σ_k u_k^d − λ²(m/2)θ, where Σ_k u_k^d = Σ_k (m/2 − 1 − k) g_k^d.
  bool prefix_direction_sum(const Vector& theta_slice, Vector& mean, Vector& out) override {
    lay_out();
    const Index n = data_.n_samples();
    const std::size_t m = ends_.size();
    if (!whole_.slice_is_whole() || n != whole_.samples() ||
        partition_path(true, 1, n, static_cast<Index>(m), data_.x.rows(), whole_.model_.n_params()) != PartitionPath::gram)
      return false;
    const Vector& theta = whole_.gathered_theta(theta_slice);
    const double lambda = whole_.weight_decay_, half = static_cast<double>(m) / 2;
    if (gram_.c.empty()) {
      gram_.mask.resize(n, n);
      gemm(1.0, data_.x, Op::transpose, data_.x, Op::none, 0.0, gram_.mask);
      std::size_t block_of_i = 0;
      for (Index i = 0; i < n; ++i) {
        while (i >= ends_[block_of_i]) ++block_of_i;
        std::size_t block_of_j = 0;
        for (Index j = 0; j < n; ++j) {
          while (j >= ends_[block_of_j]) ++block_of_j;
          gram_.mask(i, j) *= block_of_i < block_of_j ? 0.5 : -0.5;
        }
      }
      for (std::size_t k = 0; k < m; ++k) gram_.c.push_back(lambda * (static_cast<double>(k) - half));
    }
    whole_.model_.prefix_direction_sum(theta, data_, ends_, scale_, gram_, sum_, lambda != 0 ? &weighted_ : nullptr,
                                       out, {name_.names->point, name_.id});
    mean = sum_ / static_cast<double>(m);
    whole_.add_weight_decay(theta, mean);
    if (lambda != 0) out += lambda * weighted_ - lambda * lambda * half * theta;
    return true;
  }

 private:
  Part part() const { return {data_, scale_, name_.id}; }
  // The local samples in batch order, made at the first evaluation.
  void lay_out() {
    if (!ends_.empty()) return;
    std::vector<Index> all;
    for (const auto& batch : lists()) all.insert(all.end(), batch.begin(), batch.end());
    data_ = whole_.local_samples(all);
    Index end = 0;
    for (const auto& batch : lists()) {
      end += std::count_if(batch.begin(), batch.end(), [&](Index i) { return whole_.holds(i); });
      ends_.push_back(end);
    }
  }
  ModelObjective& whole_;
  double scale_;
  PartName name_;
  Dataset data_;
  std::vector<Index> ends_;                 // of each batch's block in data_ (empty until laid out)
  std::vector<Vector> wholes_;              // whole gradients or directions (several ranks)
  std::vector<Vector*> outputs_;
  std::vector<const Vector*> directions_;
  FirstLayerGram gram_;                     // prefix_direction_sum's, made at its first call
  Vector sum_, weighted_;
};

Dataset ModelObjective::local_samples(const std::vector<Index>& indices) const {
  std::vector<Index> mine;  // local columns, in the order of `indices`
  for (const Index i : indices) {
    if (i < 0 || i >= n_total_) throw Error("ModelObjective: sample index out of range");
    if (holds(i)) mine.push_back(i - first_sample_);
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
  return d;
}

std::unique_ptr<Objective> ModelObjective::restricted(const std::vector<Index>& batch) {
  if (batch.empty()) throw Error("ModelObjective::restricted: expected a non-empty batch");
  return std::make_unique<Batch>(*this, local_samples(batch), static_cast<Index>(batch.size()));
}

PartitionPath partition_path(bool blocks_together, int ranks, Index samples, Index batches, Index input_width,
                             Index n_params) {
  constexpr double budget_bytes = 1024.0 * 1024.0 * 1024.0;
  if (!blocks_together) return PartitionPath::one_by_one;
  if (ranks == 1 && batches >= 2 && samples / batches <= 128 && samples <= 2048 && samples <= 2 * input_width)
    return PartitionPath::gram;
  const double bytes = 8.0 * static_cast<double>(batches) * static_cast<double>(n_params);
  return ranks == 1 || bytes <= budget_bytes ? PartitionPath::blocks : PartitionPath::one_by_one;
}

std::unique_ptr<BatchPartition> ModelObjective::partitioned(const std::vector<std::vector<Index>>& batches) {
  const bool equal = !batches.empty() && std::all_of(batches.begin(), batches.end(), [&](const auto& b) {
    return !b.empty() && b.size() == batches.front().size();
  });
  const int ranks = slice_is_whole() ? 1 : 2;  // beyond one, the count does not matter here
  if (equal && partition_path(model_.evaluates_blocks_together(), ranks, n_total_, static_cast<Index>(batches.size()),
                              local_.x.rows(), model_.n_params()) != PartitionPath::one_by_one)
    return std::make_unique<Partition>(*this, batches);
  return Objective::partitioned(batches);
}

long ModelObjective::PassNames::take_id() {
  if (free_ids.empty()) return ++ids_made;
  const long id = free_ids.back();
  free_ids.pop_back();
  return id;
}

void ModelObjective::PassNames::give_back_id(long id) {
  ++point;  // forgets every kept pass: the id may name another part at this θ next
  free_ids.push_back(id);
}

bool ModelObjective::evaluates_here(const Part& part) const {
  return part.data.n_samples() > 0 || model_.couples_samples();
}

const Vector& ModelObjective::gathered(const Vector& slice, Vector& buffer) const {
  if (slice_is_whole()) return slice;
  slices_.all_gather(slice, buffer);
  return buffer;
}

const Vector& ModelObjective::gathered_theta(const Vector& slice) {
  // The ranks agree whether θ changed anywhere (one rank's slice may be unchanged while another's is
  // not), so all of them gather, or skip, together.
  // Compared as bytes: a pass at memory speed (Eigen's != runs element by element), and a θ whose bits
  // changed at all (-0 for +0, a NaN's payload) counts as a new point.
  const bool changed_here =
      theta_slice_.size() != slice.size() ||
      (slice.size() > 0 &&
       std::memcmp(theta_slice_.data(), slice.data(), sizeof(double) * static_cast<std::size_t>(slice.size())) != 0);
  if (slices_.sum(changed_here ? 1.0 : 0.0) > 0.0) {
    ++names_->point;
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
    loss = model_.loss_and_gradient(theta, part.data, part.scale, whole_out_, {names_->point, part.id});
  } else {
    whole_out_.setZero(model_.n_params());
  }
  slices_.reduce_scatter(whole_out_, grad);
  add_weight_decay(theta_slice, grad);
  return slices_.sum(loss) + weight_decay_term(theta);
}

void ModelObjective::hessian_vector(const Part& part, const Vector& theta_slice, const Vector& v, Vector& hv) {
  const Vector& theta = gathered_theta(theta_slice);
  const Vector& whole_v = gathered(v, v_);
  if (evaluates_here(part)) {
    model_.hessian_vector(theta, whole_v, part.data, part.scale, whole_out_, {names_->point, part.id});
  } else {
    whole_out_.setZero(model_.n_params());
  }
  slices_.reduce_scatter(whole_out_, hv);
  add_weight_decay(v, hv);
}

void ModelObjective::third_order(const Part& part, const Vector& theta_slice, const Vector& u, const Vector& v,
                                 Vector& out) {
  const Vector& theta = gathered_theta(theta_slice);
  const Vector& whole_u = gathered(u, u_);
  const Vector& whole_v = gathered(v, v_);
  if (evaluates_here(part)) {
    model_.third_order(theta, whole_u, whole_v, part.data, part.scale, whole_out_);
  } else {
    whole_out_.setZero(model_.n_params());
  }
  slices_.reduce_scatter(whole_out_, out);
}

void ModelObjective::hessian_and_third_order(const Part& part, const Vector& theta_slice, const Vector& u, Vector& hu,
                                             Vector& tuu) {
  const Vector& theta = gathered_theta(theta_slice);
  const Vector& whole_u = gathered(u, u_);
  if (evaluates_here(part)) {
    model_.hessian_and_third_order(theta, whole_u, part.data, part.scale, whole_first_, whole_out_);
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
