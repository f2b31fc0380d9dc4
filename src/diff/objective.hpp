// The loss as the flows see it: value, exact gradient, exact Hessian-vector product and exact
// third-order contraction T[u, v] = ∇³L[u, v] of L(θ) = (1/N) Σ_i ℓ_i(θ) + (λ/2)‖θ‖²
// (weight decay enters g and H, not T).
// Vectors are this rank's slices (core/slices.hpp): dimension() is the slice length. A single process
// owns whole vectors.
// Invariant: the numbers do not depend on how the data is sharded or θ sliced beyond rounding.
#pragma once
#include <memory>
#include <vector>

#include "core/dataset.hpp"
#include "core/slices.hpp"
#include "core/types.hpp"
#include "model/model.hpp"

namespace eomlab {

class BatchPartition;

class Objective {
 public:
  virtual ~Objective() = default;
  virtual Index dimension() const = 0;
  virtual double value(const Vector& theta) = 0;
  // Returns L(θ) and writes ∇L(θ).
  virtual double value_and_gradient(const Vector& theta, Vector& grad) = 0;
  // Writes ∇²L(θ) v.
  virtual void hessian_vector(const Vector& theta, const Vector& v, Vector& hv) = 0;
  // Writes ∇³L(θ)[u, v].
  virtual void third_order(const Vector& theta, const Vector& u, const Vector& v, Vector& out) = 0;
  // Hu and T[u, u] together (an objective may compute them in one pass).
  virtual void hessian_and_third_order(const Vector& theta, const Vector& u, Vector& hu, Vector& tuu) {
    hessian_vector(theta, u, hu);
    third_order(theta, u, u, tuu);
  }
  // Minibatches (sgd, DESIGN.md §1.5). The number N of samples the data term averages over (0: the loss
  // is not a mean over samples, and has no minibatches).
  virtual Index samples() const { return 0; }
  // The same loss over the samples `batch` of the data set (indices in [0, samples()), each once): its
  // data term is their mean, its weight decay this loss's, so the batch losses of a partition into equal
  // batches average to this loss. Every rank of a run passes the same list and evaluates the part it
  // holds. The result shares this objective's buffers and must not outlive it. Throws if samples() is 0.
  virtual std::unique_ptr<Objective> restricted(const std::vector<Index>& batch);
  // A partition of the samples into batches (each a list as restricted() takes), for evaluations of all
  // of them at one θ. It shares this objective's buffers and must not outlive it. Throws if samples() is 0.
  virtual std::unique_ptr<BatchPartition> partitioned(const std::vector<std::vector<Index>>& batches);
  // Whether the losses of a partition's batches average to this loss: not where a batch is normalized
  // with its own statistics (batchnorm), so sgd's models then follow the batches' mean gradient.
  virtual bool batches_average_to_whole() const { return true; }
};

// The batches of one partition of the samples, batch k being restricted(batches[k]) of the objective, with
// the evaluations sgd's eom1 field makes of all of them at one θ: every batch's gradient, and
// Σ_k ∇²L_k(θ) v_k. This base runs the batches one by one (the reference); an objective may run them
// together, to rounding the same (ModelObjective on the dense fast path: one pass over the samples).
// The batch objectives are made when first asked for (discrete sgd needs them, eom1 on the fast path not).
class BatchPartition {
 public:
  BatchPartition(Objective& whole, std::vector<std::vector<Index>> batches);
  virtual ~BatchPartition() = default;
  long count() const { return static_cast<long>(lists_.size()); }
  const std::vector<std::vector<Index>>& lists() const { return lists_; }
  Objective& batch(long k);
  // g[k] = ∇L_k(θ) for every batch k (g is resized to count()).
  virtual void gradients(const Vector& theta, std::vector<Vector>& g);
  // out = Σ_k ∇²L_k(θ) v[k] for count() directions (the base adds the batches' HVPs from the last to the first).
  virtual void hessian_vector_sum(const Vector& theta, const std::vector<const Vector*>& v, Vector& out);
  // sgd's eom1 sum where an objective has a faster way to it than gradients() then hessian_vector_sum():
  // mean = ḡ = (1/m) Σ_k g_k and out = Σ_k ∇²L_k(θ) u_k with u_k = Σ_{i<k} g_i − (m/2) ḡ, g_k = ∇L_k(θ).
  // Returns false, writing nothing, where it has none (the base).
  virtual bool prefix_direction_sum(const Vector& theta, Vector& mean, Vector& out);

 private:
  Objective& whole_;
  std::vector<std::vector<Index>> lists_;
  std::vector<std::unique_ptr<Objective>> batches_;
  Vector hv_;
};

// How ModelObjective evaluates an epoch's m batches of equal size (its partitioned(); flow/sgd.cpp's eom1
// sum), for a run of `ranks` ranks on `samples` samples of `input_width` features and a model of
// n_params parameters: through the data's Gram matrix (one rank, m >= 2 batches of at most 128,
// N <= 2048 so that the N x N mask is at most 32 MiB, N <= 2 x the input width); as blocks of one pass
// (Model::block_gradients) keeping the m whole gradients on each rank when there are several, within
// 1 GiB; or batch by batch. The first two need the model's dense fast path (`blocks_together`).
// The memory estimate (study/memory_budget.hpp) reads it too.
enum class PartitionPath { gram, blocks, one_by_one };
PartitionPath partition_path(bool blocks_together, int ranks, Index samples, Index batches, Index input_width,
                             Index n_params);

// The loss of a Model over a data set sharded across the ranks of a run: each rank holds one shard
// and one slice of every vector. An evaluation all-gathers the input slices (θ only when it changed),
// sums over the local shard, and reduce-scatters the result. A model whose statistics couple the
// samples (batchnorm) sums them over the same ranks.
class ModelObjective final : public Objective {
 public:
  // `local` is this rank's shard of a data set of `n_total` samples: samples first_sample, first_sample + 1, …
  ModelObjective(Model model, Dataset local, Index n_total, double weight_decay, const SliceExchange& slices,
                 Index first_sample = 0);
  Index dimension() const override { return slices_.local_size(); }
  double value(const Vector& theta) override;
  double value_and_gradient(const Vector& theta, Vector& grad) override;
  void hessian_vector(const Vector& theta, const Vector& v, Vector& hv) override;
  void third_order(const Vector& theta, const Vector& u, const Vector& v, Vector& out) override;
  void hessian_and_third_order(const Vector& theta, const Vector& u, Vector& hu, Vector& tuu) override;
  Index samples() const override { return n_total_; }
  // A batch keeps the samples of this rank's shard that it names, in the batch's order.
  std::unique_ptr<Objective> restricted(const std::vector<Index>& batch) override;
  // Batches of equal size on the dense fast path run together (Model::block_gradients), unless the
  // run's ranks would each hold more than 1 GiB of whole gradients for them.
  std::unique_ptr<BatchPartition> partitioned(const std::vector<std::vector<Index>>& batches) override;
  bool batches_average_to_whole() const override { return !model_.couples_samples(); }
  const Model& model() const { return model_; }
  // The largest part id handed out so far (for tests: it must not grow with the parts made in turn).
  long largest_part_id() const { return names_->ids_made; }

 private:
  class Batch;
  class Partition;
  // The samples an evaluation runs over: the local shard (id 0) or a batch's part of it.
  struct Part {
    const Dataset& data;
    double scale;
    long id;
  };
  Model model_;
  Dataset local_;
  Index n_total_, first_sample_;
  double scale_;
  double weight_decay_;
  const SliceExchange& slices_;
  Vector theta_slice_, theta_;  // the last θ gathered, as slice and whole
  // The names of the model's passes (PassKey): a point and a part's id. The point counts the θ gathered,
  // so the fast path reuses a part's forward and backward passes only at the θ they were made at. Ids
  // name the parts alive (batches and partitions: an sgd run makes new ones every reshuffled epoch); a
  // part's id is handed out again once it is gone, after every kept pass is forgotten (the point moves
  // on, as for a new θ), so no pass is reused for another part and ids stay below the most parts alive
  // at once, plus one. Shared with the parts, which may then be destroyed after their objective.
  struct PassNames {
    long point = 0, ids_made = 0;
    std::vector<long> free_ids;
    long take_id();
    void give_back_id(long id);
  };
  std::shared_ptr<PassNames> names_ = std::make_shared<PassNames>();
  // A part's id, taken from the pool when the part is made and handed back when it goes.
  struct PartName {
    explicit PartName(std::shared_ptr<PassNames> pool) : names(std::move(pool)), id(names->take_id()) {}
    ~PartName() { names->give_back_id(id); }
    PartName(const PartName&) = delete;
    PartName& operator=(const PartName&) = delete;
    std::shared_ptr<PassNames> names;
    long id;
  };
  Vector u_, v_, whole_out_, whole_first_;

  Part whole_shard() const { return {local_, scale_, 0}; }
  double value(const Part& part, const Vector& theta);
  double value_and_gradient(const Part& part, const Vector& theta, Vector& grad);
  void hessian_vector(const Part& part, const Vector& theta, const Vector& v, Vector& hv);
  void third_order(const Part& part, const Vector& theta, const Vector& u, const Vector& v, Vector& out);
  void hessian_and_third_order(const Part& part, const Vector& theta, const Vector& u, Vector& hu, Vector& tuu);
  const Vector& gathered_theta(const Vector& slice);
  // Whether this rank's slice is the whole vector (a single rank slices nothing).
  bool slice_is_whole() const { return slices_.local_size() == slices_.global_size(); }
  // The whole vector of a slice: the slice itself on a single rank, else gathered into `buffer`.
  const Vector& gathered(const Vector& slice, Vector& buffer) const;
  // Whether sample i of the data set is in this rank's shard.
  bool holds(Index i) const { return i >= first_sample_ && i < first_sample_ + local_.n_samples(); }
  // The local samples among `indices` (each in [0, n_total)), in their order.
  Dataset local_samples(const std::vector<Index>& indices) const;
  // Whether this rank runs the model: it has samples, or the model's statistics need every rank.
  bool evaluates_here(const Part& part) const;
  double local_loss(const Part& part, const Vector& theta);
  double weight_decay_term(const Vector& theta) const;
  // out += λ x, the weight decay's part of g (x = θ) or of Hx.
  void add_weight_decay(const Vector& x, Vector& out) const;
};

// L(θ) = ½ θᵀAθ + (λ/2)‖θ‖² with A symmetric: the closed-form oracle of DESIGN.md §1.4.
class QuadraticObjective final : public Objective {
 public:
  explicit QuadraticObjective(Matrix a, double weight_decay = 0.0);
  Index dimension() const override { return a_.rows(); }
  double value(const Vector& theta) override;
  double value_and_gradient(const Vector& theta, Vector& grad) override;
  void hessian_vector(const Vector& theta, const Vector& v, Vector& hv) override;
  void third_order(const Vector& theta, const Vector& u, const Vector& v, Vector& out) override;

 private:
  Matrix a_;
  double weight_decay_;
};

}  // namespace eomlab
