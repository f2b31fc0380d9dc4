// The observables every run records (DESIGN.md §3.4, §3.8): loss, grad_norm, distance to the discrete
// trajectory (flows), block_norms ‖θ_A‖², scale_invariant_norms, translation_components, sharpness
// and preconditioned_sharpness (discrete trajectory) and block_grad_norms ‖g_A‖².
#include <cmath>

#include "flow/observable.hpp"

namespace eomlab {
namespace {

class Loss final : public Observable {
 public:
  std::string name() const override { return "loss"; }
  Index sum_count() const override { return 0; }
  void local_sums(const ObservationPoint&, double*) const override {}
  void values(const ObservationPoint& p, const double*, double* out) const override { out[0] = p.loss; }
};

class GradNorm final : public Observable {
 public:
  std::string name() const override { return "grad_norm"; }
  void local_sums(const ObservationPoint& p, double* sums) const override { sums[0] = p.gradient.squaredNorm(); }
  void values(const ObservationPoint&, const double* sums, double* out) const override { out[0] = std::sqrt(sums[0]); }
};

// ‖θ(t_k) − θ_k‖ of a flow against the discrete iterate.
class Distance final : public Observable {
 public:
  explicit Distance(std::string name) : name_(std::move(name)) {}
  std::string name() const override { return name_; }
  void local_sums(const ObservationPoint& p, double* sums) const override {
    sums[0] = (p.theta - *p.discrete).squaredNorm();
  }
  void values(const ObservationPoint&, const double* sums, double* out) const override { out[0] = std::sqrt(sums[0]); }

 private:
  std::string name_;
};

// ‖x_A‖² per block A, of θ or of the gradient.
class BlockSquares final : public Observable {
 public:
  BlockSquares(std::string name, std::vector<ParameterBlock> blocks, const SliceExchange& slices, bool gradient)
      : name_(std::move(name)), blocks_(std::move(blocks)), slices_(slices), gradient_(gradient) {}
  std::string name() const override { return name_; }
  Index width() const override { return static_cast<Index>(blocks_.size()); }
  void local_sums(const ObservationPoint& p, double* sums) const override {
    const Vector& x = gradient_ ? p.gradient : p.theta;
    for (const ParameterBlock& b : blocks_)
      *sums++ = local_block_sum(b, slices_, [&](Index at, Index n) { return x.segment(at, n).squaredNorm(); });
  }

 private:
  std::string name_;
  std::vector<ParameterBlock> blocks_;
  const SliceExchange& slices_;
  bool gradient_;
};

class TranslationComponents final : public Observable {
 public:
  TranslationComponents(std::vector<ParameterSum> sums, const SliceExchange& slices)
      : components_(std::move(sums)), slices_(slices) {}
  std::string name() const override { return "translation_components"; }
  Index width() const override { return static_cast<Index>(components_.size()); }
  void local_sums(const ObservationPoint& p, double* sums) const override {
    for (const ParameterSum& s : components_) *sums++ = local_component(s, slices_, p.theta);
  }

 private:
  std::vector<ParameterSum> components_;
  const SliceExchange& slices_;
};

// A number the driver measured for the whole run (no sums): λ_max(H) or λ_max(P⁻¹H).
class Sharpness final : public Observable {
 public:
  Sharpness(std::string name, double ObservationPoint::*value) : name_(std::move(name)), value_(value) {}
  std::string name() const override { return name_; }
  Index sum_count() const override { return 0; }
  void local_sums(const ObservationPoint&, double*) const override {}
  void values(const ObservationPoint& p, const double*, double* out) const override { out[0] = p.*value_; }

 private:
  std::string name_;
  double ObservationPoint::*value_;
};

template <class T, class... Args>
Observables one(Args&&... args) {
  Observables out;
  out.push_back(std::make_unique<T>(std::forward<Args>(args)...));
  return out;
}

}  // namespace

Observables make_loss(const ObservableSetup&, TrajectoryRole) { return one<Loss>(); }

Observables make_grad_norm(const ObservableSetup&, TrajectoryRole) { return one<GradNorm>(); }

// distance_to_<method> and, under the method-independent name, distance_to_discrete (DESIGN.md §3.7).
Observables make_distance(const ObservableSetup& s, TrajectoryRole role) {
  if (role != TrajectoryRole::flow) return {};
  Observables out = one<Distance>("distance_to_" + s.discrete);
  out.push_back(std::make_unique<Distance>("distance_to_discrete"));
  return out;
}

Observables make_block_norms(const ObservableSetup& s, TrajectoryRole) {
  return one<BlockSquares>("block_norms", s.layout.blocks, s.slices, false);
}

Observables make_scale_invariant_norms(const ObservableSetup& s, TrajectoryRole) {
  if (s.layout.scale_invariant.empty()) return {};
  return one<BlockSquares>("scale_invariant_norms", s.layout.scale_invariant, s.slices, false);
}

Observables make_translation_components(const ObservableSetup& s, TrajectoryRole) {
  if (s.layout.translation.empty()) return {};
  return one<TranslationComponents>(s.layout.translation, s.slices);
}

Observables make_sharpness(const ObservableSetup& s, TrajectoryRole role) {
  if (role != TrajectoryRole::discrete || !s.layout.sharpness) return {};
  return one<Sharpness>("sharpness", &ObservationPoint::sharpness);
}

Observables make_preconditioned_sharpness(const ObservableSetup& s, TrajectoryRole role) {
  if (role != TrajectoryRole::discrete || !s.layout.preconditioned_sharpness) return {};
  return one<Sharpness>("preconditioned_sharpness", &ObservationPoint::preconditioned_sharpness);
}

Observables make_block_grad_norms(const ObservableSetup& s, TrajectoryRole) {
  return one<BlockSquares>("block_grad_norms", s.layout.blocks, s.slices, true);
}

}  // namespace eomlab
