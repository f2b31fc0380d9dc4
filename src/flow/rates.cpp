// The rates at the discrete iterates (DESIGN.md §3.8, the EoM paper's table), recorded along the
// discrete trajectory when output.rates = on:
//   predicted_block_rates/<flow>        2⟨θ_A, F_A(θ_k)⟩: the rate of ‖θ_A‖² that the flow's field predicts
//   measured_block_rates                (‖θ_A(k+1)‖² − ‖θ_A(k)‖²)/η from the method's own next step
//   predicted_translation_rates/<flow>  ⟨v_c, F(θ_k)⟩ for each translation direction v_c
//   measured_translation_rates          (⟨v_c, θ_{k+1}⟩ − ⟨v_c, θ_k⟩)/η
#include "flow/observable.hpp"

namespace eomlab {
namespace {

class PredictedBlockRates final : public Observable {
 public:
  PredictedBlockRates(const ObservableSetup& s, std::size_t flow)
      : name_("predicted_block_rates/" + s.flows[flow]), blocks_(s.layout.blocks), slices_(s.slices), flow_(flow) {}
  std::string name() const override { return name_; }
  Index width() const override { return static_cast<Index>(blocks_.size()); }
  void local_sums(const ObservationPoint& p, double* sums) const override {
    const Vector& f = (*p.fields)[flow_];
    for (const ParameterBlock& b : blocks_)
      *sums++ = 2 * local_block_sum(b, slices_, [&](Index at, Index n) { return p.theta.segment(at, n).dot(f.segment(at, n)); });
  }

 private:
  std::string name_;
  std::vector<ParameterBlock> blocks_;
  const SliceExchange& slices_;
  std::size_t flow_;
};

class MeasuredBlockRates final : public Observable {
 public:
  explicit MeasuredBlockRates(const ObservableSetup& s) : blocks_(s.layout.blocks), slices_(s.slices), lr_(s.lr) {}
  std::string name() const override { return "measured_block_rates"; }
  Index width() const override { return static_cast<Index>(blocks_.size()); }
  // ‖a‖² − ‖b‖² as ⟨a − b, a + b⟩: no cancellation of the two norms.
  void local_sums(const ObservationPoint& p, double* sums) const override {
    const Vector& next = *p.next;
    for (const ParameterBlock& b : blocks_)
      *sums++ = local_block_sum(b, slices_, [&](Index at, Index n) {
        return (next.segment(at, n) - p.theta.segment(at, n)).dot(next.segment(at, n) + p.theta.segment(at, n));
      });
  }
  void values(const ObservationPoint&, const double* sums, double* out) const override {
    for (Index i = 0; i < width(); ++i) out[i] = sums[i] / lr_;
  }

 private:
  std::vector<ParameterBlock> blocks_;
  const SliceExchange& slices_;
  double lr_;
};

class PredictedTranslationRates final : public Observable {
 public:
  PredictedTranslationRates(const ObservableSetup& s, std::size_t flow)
      : name_("predicted_translation_rates/" + s.flows[flow]), components_(s.layout.translation), slices_(s.slices),
        flow_(flow) {}
  std::string name() const override { return name_; }
  Index width() const override { return static_cast<Index>(components_.size()); }
  void local_sums(const ObservationPoint& p, double* sums) const override {
    for (const ParameterSum& c : components_) *sums++ = local_component(c, slices_, (*p.fields)[flow_]);
  }

 private:
  std::string name_;
  std::vector<ParameterSum> components_;
  const SliceExchange& slices_;
  std::size_t flow_;
};

class MeasuredTranslationRates final : public Observable {
 public:
  explicit MeasuredTranslationRates(const ObservableSetup& s)
      : components_(s.layout.translation), slices_(s.slices), lr_(s.lr) {}
  std::string name() const override { return "measured_translation_rates"; }
  Index width() const override { return static_cast<Index>(components_.size()); }
  void local_sums(const ObservationPoint& p, double* sums) const override {
    step_ = *p.next - p.theta;
    for (const ParameterSum& c : components_) *sums++ = local_component(c, slices_, step_);
  }
  void values(const ObservationPoint&, const double* sums, double* out) const override {
    for (Index i = 0; i < width(); ++i) out[i] = sums[i] / lr_;
  }

 private:
  std::vector<ParameterSum> components_;
  const SliceExchange& slices_;
  double lr_;
  mutable Vector step_;
};

}  // namespace

Observables make_rates(const ObservableSetup& s, TrajectoryRole role) {
  Observables out;
  if (role != TrajectoryRole::discrete || !s.rates) return out;
  for (std::size_t f = 0; f < s.flows.size(); ++f) out.push_back(std::make_unique<PredictedBlockRates>(s, f));
  out.push_back(std::make_unique<MeasuredBlockRates>(s));
  if (s.layout.translation.empty()) return out;
  for (std::size_t f = 0; f < s.flows.size(); ++f) out.push_back(std::make_unique<PredictedTranslationRates>(s, f));
  out.push_back(std::make_unique<MeasuredTranslationRates>(s));
  return out;
}

}  // namespace eomlab
