// layernorm: each sample's features centred and scaled to unit variance, ẑ = (z - mean z) / std z over
// the features (biased variance, no gain, no epsilon). No parameters; the output is unchanged when the
// input is scaled, so a dense layer before it is jointly scale-invariant in its (W, b).
#include "model/layer.hpp"

namespace eomlab {
namespace {

class LayerNorm final : public Layer {
 public:
  explicit LayerNorm(const Shape& shape) : shape_(shape), n_(shape.size()) {}

  std::string text() const override { return "layernorm"; }
  Shape output_shape() const override { return shape_; }
  Index held_size() const override { return 3 * n_; }  // ẑ, c and the scratch c²
  InputScaleInvariance input_scale_invariance() const override { return InputScaleInvariance::joint; }
  bool input_shift_invariant() const override { return true; }

  // ẑ = c ⊙ s with c = z - mean(z), s = var^{-1/2}, var = mean(c²) over the features.
  void forward(const ForwardPass& pass, const Jet& in, Jet& out, Scratch& s) override {
    const double inv_rows = 1.0 / static_cast<double>(n_);
    jet_column_sums(in, s.t0);
    centred_ = in;
    s.t1.reset(pass.m);
    jet_axpy(inv_rows, s.t0, s.t1);  // mean over the features
    jet_subtract_row(centred_, s.t1);
    jet_hadamard(centred_, centred_, s.t0);
    jet_column_sums(s.t0, s.t1);
    variance_.reset(pass.m);
    jet_axpy(inv_rows, s.t1, variance_);
    // The mean's own rounding taken out, as in batchnorm: var = mean(c²) - δ̄², c - δ̄ with δ̄ = mean(c), so a
    // sample whose features are all equal gets c = 0 and var = 0 exactly (0/0, refused at the start).
    jet_column_sums(centred_, s.t1);
    deviation_.reset(pass.m);
    jet_axpy(inv_rows, s.t1, deviation_);
    jet_hadamard(deviation_, deviation_, s.t1);
    jet_axpy(-1.0, s.t1, variance_);
    jet_subtract_row(centred_, deviation_);
    power_derivatives(variance_.c[0], -0.5, pass.m, s.derivs);
    jet_apply(variance_, s.derivs, inv_std_);
    jet_scale_columns(centred_, inv_std_, out);
  }

  // c̄ = ẑ̄ ⊙ s + (2/n) c var̄ with var̄ = (Σ ẑ̄ ⊙ c) ds/dvar; z̄ = c̄ - mean(c̄).
  void backward(const BackwardPass& pass, const Jet&, const Jet& delta, Jet* delta_in, Scratch& s) override {
    if (!delta_in) return;
    const double inv_rows = 1.0 / static_cast<double>(n_);
    Jet& c_bar = *delta_in;
    jet_scale_columns(delta, inv_std_, c_bar);
    jet_hadamard(delta, centred_, s.t0);
    jet_column_sums(s.t0, s.t2);  // s̄
    power_derivatives(variance_.c[0], -0.5, pass.m + 1, s.derivs);
    jet_apply(variance_, s.derivs + 1, s.t3);  // ds/dvar
    jet_hadamard(s.t2, s.t3, s.t0);            // var̄
    jet_scale_columns(centred_, s.t0, s.t2);
    jet_axpy(2.0 * inv_rows, s.t2, c_bar);
    jet_column_sums(c_bar, s.t0);
    s.t2.reset(pass.m);
    jet_axpy(inv_rows, s.t0, s.t2);
    jet_subtract_row(c_bar, s.t2);
  }

 private:
  Shape shape_;
  Index n_;
  Jet centred_, deviation_, variance_, inv_std_;
};

}  // namespace

std::unique_ptr<Layer> make_layer_norm(const LayerSpec& spec, const Shape& in) {
  if (!spec.args.empty()) spec.refuse("no arguments");
  // One feature is its own mean: every sample would normalize to 0/0 (there is no epsilon).
  if (in.size() < 2) spec.refuse("an input of at least 2 features, got " + in.text());
  return std::make_unique<LayerNorm>(in);
}

}  // namespace eomlab
