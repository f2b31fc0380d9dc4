// Minibatch SGD exactly as torch.optim.SGD (momentum 0) runs it over a DataLoader of batch size b
// (DESIGN.md §1.5): θ ← θ − η∇L_j(θ) for the m = N/b batches of each epoch in the epoch's order, L_j the
// mean loss over batch j plus the weight decay (λ/2)‖θ‖², so the batch losses average to L.
//
// A step evaluates one batch gradient: the next step's, g_{j(k)}(θ_k), so next_iterate() needs nothing
// more. L(θ_k) and ∇L(θ_k), which only records need (observables, the divergence verdict), are evaluated
// when asked and kept until the next step; between records the driver checks the batch loss.
//
// Its continuous models (time t = kη, matching SGD at epoch boundaries t = e·mη):
//   eom0  θ' = −ḡ                          (gradient flow of L)
//   eom1  θ' = −ḡ + η F1,  F1 = (1/m) Σ_{i<j} H_j g_i − (m/2) H̄ḡ,
// g_j, H_j batch j's gradient and Hessian in the epoch's order, ḡ = (1/m)Σ g_j, H̄ = (1/m)Σ H_j. Where
// each batch is normalized with its own statistics (batchnorm) ḡ is not ∇L: eom0 is then −ḡ evaluated
// from the m batch gradients (gf stays the gradient flow of L, which SGD does not follow). F1 is
// evaluated as (1/m) Σ_j H_j u_j with u_j = Σ_{i<j} g_i − (m/2) ḡ: m batch gradients (one full gradient
// of work) and Σ_j H_j u_j (one full HVP's tangent passes: on the dense fast path the batches run as
// blocks of one pass, whose forward and backward passes the HVPs reuse; BatchPartition), never m²
// products. Under reshuffling each epoch has its own order, so eom1 is piecewise in time: one piece per
// epoch (Flow::segment_steps).
#include "flow/sgd.hpp"

#include <algorithm>
#include <optional>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "flow/flow.hpp"
#include "flow/method.hpp"

namespace eomlab {

std::unique_ptr<Flow> make_gradient_flow(const FlowContext&);

std::vector<Index> sgd_permutation(std::uint64_t seed, long epoch, Index n) {
  std::vector<Index> p(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) p[static_cast<std::size_t>(i)] = i;
  Rng rng(seed, sgd_epoch_stream + static_cast<std::uint64_t>(epoch));
  for (Index i = n - 1; i > 0; --i) {
    const auto j = static_cast<Index>(rng.below(static_cast<std::uint64_t>(i) + 1));
    std::swap(p[static_cast<std::size_t>(i)], p[static_cast<std::size_t>(j)]);
  }
  return p;
}

double permutation_fingerprint(const std::vector<Index>& permutation) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const Index i : permutation) {
    h ^= static_cast<std::uint64_t>(i);
    h *= 0x100000001b3ULL;
  }
  return static_cast<double>(h >> 11);
}

SgdBatches::SgdBatches(Objective& full, long batch_size, std::uint64_t seed, BatchOrder order)
    : full_(full), b_(batch_size), seed_(seed), order_(order) {
  const Index n = full.samples();
  if (b_ <= 0 || n % b_ != 0)
    throw InputError("optimizer.batch_size: expected a divisor of the data set's " + std::to_string(n) +
                     " samples, got " + std::to_string(b_));
  m_ = n / b_;
}

void SgdBatches::select_epoch(long epoch) {
  const long e = order_ == BatchOrder::fixed ? 0 : epoch;
  if (e == selected_) return;
  std::vector<Index> permutation = sgd_permutation(seed_, e, full_.samples());
  std::vector<std::vector<Index>> batches;
  for (long j = 0; j < m_; ++j)
    batches.emplace_back(permutation.begin() + j * b_, permutation.begin() + (j + 1) * b_);
  partition_ = full_.partitioned(batches);  // on a throw, the epoch selected before stays whole
  permutation_ = std::move(permutation);
  selected_ = e;
}

// The batch gradients become the u_j in place, a cache-sized chunk of entries at a time: ḡ over the
// chunk, then the running sums Σ_{i<=j} g_i (summed from the first batch, as ḡ's), u_{j+1} in g_j's
// place and u_0 in g_{m−1}'s (which no u_j reads).
void SgdEom1Field::directions_in_place() {
  const std::size_t m = g_.size();
  const double md = static_cast<double>(m), half = md / 2;
  const Index n = g_.front().size();
  // m chunks of g together within about half of a 1 MiB L2 cache
  const Index chunk = std::clamp<Index>((Index(1) << 16) / static_cast<Index>(m), 64, 4096);
  mean_.resize(n);
  running_.resize(chunk);
  for (Index start = 0; start < n; start += chunk) {
    const Index len = std::min(chunk, n - start);
    auto mean = mean_.segment(start, len);
    auto running = running_.segment(0, len);
    running = g_[0].segment(start, len);
    for (std::size_t j = 1; j < m; ++j) running += g_[j].segment(start, len);
    mean = running / md;  // ḡ
    running = g_[0].segment(start, len);
    for (std::size_t j = 0; j + 1 < m; ++j) {
      if (j > 0) running += g_[j].segment(start, len);
      g_[j].segment(start, len) = running - half * mean;  // u_{j+1}
    }
    g_[m - 1].segment(start, len) = -half * mean;  // u_0
  }
  u_.assign(m, nullptr);
  u_[0] = &g_[m - 1];
  for (std::size_t j = 1; j < m; ++j) u_[j] = &g_[j - 1];
}

void SgdEom1Field::operator()(BatchPartition& batches, double lr, const Vector& theta, Vector& out) {
  if (batches.count() == 0) throw Error("sgd eom1: expected at least one batch");
  if (batches.prefix_direction_sum(theta, mean_, out)) {  // the objective's own way to the same sum
    out *= lr / static_cast<double>(batches.count());
    out -= mean_;
    return;
  }
  batches.gradients(theta, g_);
  directions_in_place();
  batches.hessian_vector_sum(theta, u_, out);
  out *= lr / static_cast<double>(g_.size());  // η F1
  out -= mean_;
}

namespace {

// −ḡ = −(1/m) Σ_j g_j from the m batch gradients, summed from the first batch (as eom1's ḡ).
class SgdMeanGradient {
 public:
  void operator()(BatchPartition& batches, const Vector& theta, Vector& out) {
    batches.gradients(theta, g_);
    out = g_.front();
    for (std::size_t j = 1; j < g_.size(); ++j) out += g_[j];
    out /= -static_cast<double>(g_.size());
  }

 private:
  std::vector<Vector> g_;
};

// eom1, or eom0 from the batches (see the top of this file); its pieces are epochs when the order is
// reshuffled.
class SgdModel final : public Flow {
 public:
  SgdModel(Objective& full, const MethodSettings& s, std::uint64_t seed, double lr, int order)
      : settings_(s), lr_(lr), order_(order) {
    if (full.samples() > 0) batches_.emplace(full, s.batch_size, seed, s.order);
  }
  long segment_steps() const override {
    return batches_ && settings_.order == BatchOrder::reshuffle ? batches_->count() : 0;
  }
  void begin_segment(long piece) override { piece_ = piece; }

 protected:
  void field(const Vector& theta, Vector& out) override {
    if (!batches_) throw Error("sgd eom" + std::to_string(order_) + ": expected a loss that is a mean over samples");
    batches_->select_epoch(piece_);
    if (order_ == 0)
      mean_gradient_(batches_->partition(), theta, out);
    else
      field_(batches_->partition(), lr_, theta, out);
  }

 private:
  MethodSettings settings_;
  double lr_;
  int order_;
  std::optional<SgdBatches> batches_;
  long piece_ = 0;
  SgdEom1Field field_;
  SgdMeanGradient mean_gradient_;
};

class Sgd final : public Method {
 public:
  explicit Sgd(const MethodContext& c) : objective_(c.objective), lr_(c.lr), settings_(c.settings), seed_(c.seed) {
    // A stand-in loss that is no mean over samples (the study's check of the flows) makes no batches.
    if (c.objective.samples() > 0) batches_.emplace(c.objective, c.settings.batch_size, c.seed, c.settings.order);
  }
  std::string name() const override { return "sgd"; }
  void start(const Vector& theta0) override {
    theta_ = theta0;
    step_ = 0;
    full_step_ = -1;
    evaluate_next_batch();
  }
  void step() override {
    theta_.noalias() -= lr_ * batch_grad_;
    ++step_;
    evaluate_next_batch();
  }
  void next_iterate(Vector& out) const override { out = theta_ - lr_ * batch_grad_; }
  const Vector& theta() const override { return theta_; }
  const Vector& gradient() const override {
    evaluate_full();
    return full_grad_;
  }
  double loss() const override {
    evaluate_full();
    return full_loss_;
  }
  long evaluations() const override { return evaluations_; }
  double stable_lr_sharpness() const override { return 2.0; }
  int max_model_order() const override { return 1; }
  std::unique_ptr<Flow> make_model(int order, const FlowContext& c) const override {
    if (order == 0 && c.objective.batches_average_to_whole()) return make_gradient_flow(c);
    return std::make_unique<SgdModel>(c.objective, settings_, seed_, c.lr, order);
  }
  long period() const override { return batches_ ? batches_->count() : 1; }
  bool loss_with_step() const override { return false; }
  double step_loss() const override { return batch_loss_; }

  MethodState save() const override {
    const double fingerprint = batches_ && batches_->selected() >= 0 ? permutation_fingerprint(batches_->permutation()) : 0.0;
    return {{{"theta", theta_}, {"batch_grad", batch_grad_}, {"grad", full_grad_}},
            {{"batch_loss", batch_loss_},
             {"loss", full_loss_},
             {"loss_step", static_cast<double>(full_step_)},
             {"step", static_cast<double>(step_)},
             {"evaluations", static_cast<double>(evaluations_)},
             {"order_fingerprint", fingerprint}}};
  }
  void restore(const MethodState& s) override {
    theta_ = s.vectors.at(0).second;
    batch_grad_ = s.vectors.at(1).second;
    full_grad_ = s.vectors.at(2).second;
    batch_loss_ = s.scalars.at(0).second;
    full_loss_ = s.scalars.at(1).second;
    full_step_ = static_cast<long>(s.scalars.at(2).second);
    step_ = static_cast<long>(s.scalars.at(3).second);
    evaluations_ = static_cast<long>(s.scalars.at(4).second);
    require_batches().select_epoch(step_ / batches_->count());
    if (permutation_fingerprint(batches_->permutation()) != s.scalars.at(5).second)
      throw Error("sgd: the checkpoint's batch order is not the one the run's seed gives");
  }

 private:
  SgdBatches& require_batches() {
    if (!batches_) throw Error("sgd: expected a loss that is a mean over samples");
    return *batches_;
  }
  // g_{j(k)}(θ_k) and its loss: batch k mod m of epoch k / m.
  void evaluate_next_batch() {
    SgdBatches& batches = require_batches();
    batches.select_epoch(step_ / batches.count());
    batch_loss_ = batches.batch(step_ % batches.count()).value_and_gradient(theta_, batch_grad_);
    ++evaluations_;
  }
  // L(θ_k) and ∇L(θ_k), once per iterate (every rank of the run asks at the same steps).
  void evaluate_full() const {
    if (full_step_ == step_) return;
    full_loss_ = objective_.value_and_gradient(theta_, full_grad_);
    full_step_ = step_;
    ++evaluations_;
  }

  Objective& objective_;
  double lr_;
  MethodSettings settings_;
  std::uint64_t seed_;
  std::optional<SgdBatches> batches_;
  Vector theta_, batch_grad_;
  double batch_loss_ = 0;
  long step_ = 0;
  mutable Vector full_grad_;
  mutable double full_loss_ = 0;
  mutable long full_step_ = -1;
  mutable long evaluations_ = 0;
};

}  // namespace

std::unique_ptr<Method> make_sgd(const MethodContext& c) { return std::make_unique<Sgd>(c); }

}  // namespace eomlab
