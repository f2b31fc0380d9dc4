// batchnorm[(affine=on|off, eps=E)]: each channel (each feature of a vector) normalized with the
// statistics of the whole data set, x̂ = (x - μ_c) / sqrt(σ²_c + eps), biased variance, then
// y = γ_c x̂ + β_c if affine (γ (C) then β (C) in θ, initialised 1 and 0). The sums behind μ and σ² (and
// their directional derivatives) run over every data shard of the run (ForwardPass::shards), so a
// sharded run gives the unsharded numbers to rounding. With eps = 0 the output is unchanged when a
// channel of the input is scaled: the linear layer before it is scale-invariant per channel.
#include <cmath>
#include <sstream>
#include <utility>

#include "model/layer.hpp"

namespace eomlab {
namespace {

// Sums the non-zero components of per-channel jets (and `extra`, if given) over the shards in one
// reduction.
void sum_over_shards(const Reducer& shards, std::initializer_list<Jet*> jets, std::vector<double>& buffer,
                     double* extra = nullptr) {
  buffer.clear();
  for (Jet* j : jets)
    for (int s = 0; s < j->size(); ++s)
      if (j->nz[static_cast<std::size_t>(s)]) {
        const Buffer& x = j->c[static_cast<std::size_t>(s)];
        buffer.insert(buffer.end(), x.data(), x.data() + x.size());
      }
  if (extra) buffer.push_back(*extra);
  shards.sum_in_place(buffer.data(), buffer.size());
  const double* at = buffer.data();
  for (Jet* j : jets)
    for (int s = 0; s < j->size(); ++s)
      if (j->nz[static_cast<std::size_t>(s)]) {
        Buffer& x = j->c[static_cast<std::size_t>(s)];
        std::copy(at, at + x.size(), x.data());
        at += x.size();
      }
  if (extra) *extra = *at;
}

void scale_jet(Jet& j, double factor) {
  for (int s = 0; s < j.size(); ++s)
    if (j.nz[static_cast<std::size_t>(s)]) j.c[static_cast<std::size_t>(s)] *= factor;
}

// The shortest decimal text that reads back as x.
std::string number_text(double x) {
  for (int digits = 6;; ++digits) {
    std::ostringstream out;
    out.precision(digits);
    out << x;
    if (digits >= 17 || std::stod(out.str()) == x) return out.str();
  }
}

// θ's slice [offset, offset + n) and its directions as a column jet.
void parameter_jet(const ForwardPass& pass, Index offset, Index n, Jet& out) {
  out.reset(pass.m);
  out.set(0, n, 1) = pass.theta.segment(offset, n);
  for (int d = 0; d < pass.m; ++d) out.set(1 << d, n, 1) = pass.directions[d]->segment(offset, n);
}

class BatchNorm final : public Layer {
 public:
  BatchNorm(const Shape& shape, bool affine, double eps) : shape_(shape), affine_(affine), eps_(eps) {}

  std::string text() const override {
    std::string args;
    if (!affine_) args += "affine=off";
    if (eps_ != 0.0) args += (args.empty() ? "" : ", ") + std::string("eps=") + number_text(eps_);
    return args.empty() ? "batchnorm" : "batchnorm(" + args + ")";
  }
  Shape output_shape() const override { return shape_; }
  Index held_size() const override { return 4 * shape_.size(); }  // the output, centred_, normalized_, work_
  Index n_params() const override { return affine_ ? 2 * shape_.channels : 0; }
  void place(Index offset, const std::string& name) override {
    offset_ = offset;
    name_ = name;
  }
  std::vector<ParameterBlock> blocks() const override {
    if (!affine_) return {};
    const Index c = shape_.channels;
    return {{name_ + ".gamma", offset_, c, c, 1}, {name_ + ".beta", offset_ + c, c, c, 1}};
  }
  void initialize(Rng&, Vector& theta) const override {
    if (!affine_) return;
    theta.segment(offset_, shape_.channels).setOnes();
    theta.segment(offset_ + shape_.channels, shape_.channels).setZero();
  }
  InputScaleInvariance input_scale_invariance() const override {
    return eps_ == 0.0 ? InputScaleInvariance::per_channel : InputScaleInvariance::none;
  }
  bool couples_samples() const override { return true; }

  void forward(const ForwardPass& pass, const Jet& in, Jet& out, Scratch& s) override {
    const Index pixels = shape_.pixels();
    jet_channel_sums(in, pixels, s.t0);
    count_ = static_cast<double>(in.cols() * pixels);
    sum_over_shards(pass.shards, {&s.t0}, reduced_, &count_);
    scale_jet(s.t0, 1.0 / count_);  // μ
    centred_.reset(pass.m);
    jet_axpy(1.0, in, centred_);
    jet_add_to_channels(centred_, -1.0, s.t0, pixels);
    jet_hadamard(centred_, centred_, s.t1);
    jet_channel_sums(s.t1, pixels, variance_);
    // The deviations' own mean δ̄ (rounding of μ) is taken out of both (the corrected two-pass algorithm):
    // σ² = mean(d²) - δ̄², d - δ̄. So a constant channel gets σ² = 0 and x - μ = 0 exactly (0/0 with eps 0,
    // refused at the start, as documented), whichever the constant; with the rounded μ alone it got
    // rounding noise scaled to ±1.
    jet_channel_sums(centred_, pixels, deviation_);
    sum_over_shards(pass.shards, {&variance_, &deviation_}, reduced_);
    scale_jet(variance_, 1.0 / count_);
    scale_jet(deviation_, 1.0 / count_);
    jet_hadamard(deviation_, deviation_, s.t1);
    jet_axpy(-1.0, s.t1, variance_);
    jet_add_to_channels(centred_, -1.0, deviation_, pixels);
    variance_.c[0].array() += eps_;
    power_derivatives(variance_.c[0], -0.5, pass.m, s.derivs);
    jet_apply(variance_, s.derivs, inv_std_);
    jet_scale_channels(centred_, inv_std_, pixels, normalized_);
    if (!affine_) {
      out.reset(pass.m);
      jet_axpy(1.0, normalized_, out);
      return;
    }
    parameter_jet(pass, offset_, shape_.channels, gamma_);
    parameter_jet(pass, offset_ + shape_.channels, shape_.channels, beta_);
    jet_scale_channels(normalized_, gamma_, pixels, out);
    jet_add_to_channels(out, 1.0, beta_, pixels);
  }

  // With ḡ = γ ⊙ δ: ∂/∂x = s ⊙ (ḡ - mean ḡ - x̂ ⊙ mean(ḡ ⊙ x̂)), the means over all shards;
  // ∂/∂γ = Σ δ ⊙ x̂ and ∂/∂β = Σ δ over this shard (the objective sums the shards' gradients).
  void backward(const BackwardPass& pass, const Jet&, const Jet& delta, Jet* delta_in, Scratch& s) override {
    const Index pixels = shape_.pixels();
    const Jet& normalized = normalized_;
    jet_channel_sums(delta, pixels, sum_delta_);
    jet_hadamard(delta, normalized, s.t0);
    jet_channel_sums(s.t0, pixels, sum_delta_x_);
    if (affine_) {
      pass.write(sum_delta_x_, offset_, shape_.channels, 1);
      pass.write(sum_delta_, offset_ + shape_.channels, shape_.channels, 1);
    }
    if (!delta_in) return;
    sum_over_shards(pass.shards, {&sum_delta_, &sum_delta_x_}, reduced_);
    if (affine_) {
      jet_scale_channels(delta, gamma_, pixels, work_);
      // Through a per-channel temporary of the layer's own: swapped with the shared scratch, the channel
      // sums' small storage would take the place of a batch-sized buffer, reallocated every evaluation.
      jet_hadamard(sum_delta_, gamma_, scaled_);
      std::swap(scaled_, sum_delta_);
      jet_hadamard(sum_delta_x_, gamma_, scaled_);
      std::swap(scaled_, sum_delta_x_);
    } else {
      work_.reset(delta.m);
      jet_axpy(1.0, delta, work_);
    }
    jet_add_to_channels(work_, -1.0 / count_, sum_delta_, pixels);
    jet_scale_channels(normalized, sum_delta_x_, pixels, s.t0);
    jet_axpy(-1.0 / count_, s.t0, work_);
    jet_scale_channels(work_, inv_std_, pixels, *delta_in);
  }

 private:
  Shape shape_;
  bool affine_;
  double eps_;
  Index offset_ = 0;
  std::string name_;
  double count_ = 0;  // samples x pixels over all shards
  std::vector<double> reduced_;
  Jet centred_, deviation_, variance_, inv_std_, normalized_, gamma_, beta_;
  Jet sum_delta_, sum_delta_x_, scaled_, work_;
};

}  // namespace

// batchnorm, batchnorm(affine=off), batchnorm(eps=1e-5), batchnorm(affine=on, eps=0).
std::unique_ptr<Layer> make_batch_norm(const LayerSpec& spec, const Shape& in) {
  const auto refuse = [&] { spec.refuse("batchnorm[(affine=on|off, eps=E)] with a finite E >= 0"); };
  bool affine = true, affine_given = false, eps_given = false;
  double eps = 0.0;
  for (const std::string& arg : spec.args) {
    if (arg == "affine=on" || arg == "affine=off") {
      if (std::exchange(affine_given, true)) refuse();  // given twice
      affine = arg == "affine=on";
    } else if (arg.rfind("eps=", 0) == 0) {
      if (std::exchange(eps_given, true)) refuse();
      eps = spec.number(arg.substr(4), "batchnorm[(affine=on|off, eps=E)] with a finite E >= 0");
      if (eps < 0) refuse();
    } else {
      refuse();
    }
  }
  return std::make_unique<BatchNorm>(in, affine, eps);
}

}  // namespace eomlab
