// dense(OUT[, weightnorm=on]): z = W a + b, with W (OUT x IN, row-major) then b (OUT) in θ.
// Default initialisation W ~ N(0, 1/IN), b ~ N(0, 0.1²). With weightnorm every row w of W is used as
// w/‖w‖, so each row is a scale-invariant block.
#include <cmath>

#include "model/dense_path.hpp"
#include "model/layer.hpp"

namespace eomlab {
namespace {

using ConstWeights = Eigen::Map<const RowMajorMatrix>;

class Dense final : public Layer {
 public:
  Dense(Index in, Index out, bool weightnorm) : weightnorm_(weightnorm) {
    l_.in = in;
    l_.out = out;
  }

  std::string text() const override {
    return "dense(" + std::to_string(l_.out) + (weightnorm_ ? ", weightnorm=on)" : ")");
  }
  Shape output_shape() const override { return l_.out; }
  // r ⊙ W; scratch t0 and t1, and ∂/∂(r ⊙ W) in every component where a plain layer writes only those wanted
  HeldParameters held_parameters() const override {
    return weightnorm_ ? HeldParameters{l_.out * l_.in, 3 * l_.out * l_.in} : HeldParameters{};
  }
  Index n_params() const override { return l_.in * l_.out + l_.out; }
  void place(Index offset, const std::string& name) override {
    l_.w_offset = offset;
    l_.b_offset = offset + l_.in * l_.out;
    name_ = name;
  }
  std::vector<ParameterBlock> blocks() const override {
    return {{name_ + ".W", l_.w_offset, l_.in * l_.out, l_.out, l_.in}, {name_ + ".b", l_.b_offset, l_.out, l_.out, 1}};
  }
  void initialize(Rng& rng, Vector& theta) const override {
    const double w_std = 1.0 / std::sqrt(static_cast<double>(l_.in));
    for (Index k = 0; k < l_.in * l_.out; ++k) theta[l_.w_offset + k] = w_std * rng.normal();
    for (Index k = 0; k < l_.out; ++k) theta[l_.b_offset + k] = 0.1 * rng.normal();
  }

  std::vector<ParameterBlock> scale_invariant_blocks() const override {
    std::vector<ParameterBlock> out;
    if (weightnorm_)
      for (Index r = 0; r < l_.out; ++r)
        out.push_back({name_ + ".W[" + std::to_string(r) + "]", l_.w_offset + r * l_.in, l_.in, 1, l_.in});
    return out;
  }
  std::optional<ParameterBlock> linear_block() const override {
    if (weightnorm_) return std::nullopt;
    return ParameterBlock{name_ + ".Wb", l_.w_offset, n_params(), n_params(), 1};
  }
  std::vector<ParameterBlock> channel_blocks() const override {
    std::vector<ParameterBlock> out;
    if (!weightnorm_)
      for (Index r = 0; r < l_.out; ++r)
        out.push_back({name_ + ".W[" + std::to_string(r) + "]", l_.w_offset + r * l_.in, l_.in, 1, l_.in});
    return out;
  }
  // With weightnorm a common shift of W's rows is no symmetry (each row is divided by its own norm): the
  // bias sum alone.
  std::vector<ParameterSum> output_shift_components() const override {
    std::vector<ParameterSum> out;
    if (!weightnorm_)
      for (Index j = 0; j < l_.in; ++j) out.push_back({name_ + ".W[:," + std::to_string(j) + "]", l_.w_offset + j, l_.in, l_.out});
    out.push_back({name_ + ".b", l_.b_offset, 1, l_.out});
    return out;
  }
  void plan_dense_path(DensePathPlan& plan) const override {
    if (weightnorm_)
      plan.reject();
    else
      plan.add_dense(l_);
  }

  void forward(const ForwardPass& pass, const Jet& in, Jet& out, Scratch& s) override {
    w_.reset(pass.m);
    b_.reset(pass.m);
    w_.set(0, l_.out, l_.in) = ConstWeights(pass.theta.data() + l_.w_offset, l_.out, l_.in);
    b_.set(0, l_.out, 1) = pass.theta.segment(l_.b_offset, l_.out);
    for (int d = 0; d < pass.m; ++d) {
      w_.set(1 << d, l_.out, l_.in) = ConstWeights(pass.directions[d]->data() + l_.w_offset, l_.out, l_.in);
      b_.set(1 << d, l_.out, 1) = pass.directions[d]->segment(l_.b_offset, l_.out);
    }
    if (weightnorm_) normalize_rows(pass.m, s);
    jet_matmul(weights(), Op::none, in, Op::none, out);
    jet_add_to_columns(out, b_);
  }

  void backward(const BackwardPass& pass, const Jet& in, const Jet& delta, Jet* delta_in, Scratch& s) override {
    // ∂/∂W_used = δ aᵀ; only the components written are needed unless it feeds the weight normalization.
    jet_matmul(delta, Op::none, in, Op::transpose, s.grad_w, weightnorm_ ? all_components : pass.wanted());
    jet_row_sums(delta, s.grad_b);
    pass.write(s.grad_b, l_.b_offset, l_.out, 1);
    if (weightnorm_)
      write_normalized_weight_gradient(pass, s);
    else
      pass.write(s.grad_w, l_.w_offset, l_.out, l_.in);
    if (delta_in) jet_matmul(weights(), Op::transpose, delta, Op::none, *delta_in);  // Wᵀδ
  }

 private:
  DenseLayer l_;
  bool weightnorm_;
  std::string name_;
  Jet w_, b_;                           // W and b with their directional parts
  Jet row_sq_, row_scale_, w_normed_;  // weightnorm: n = Σ_j W², r = n^{-1/2}, r ⊙ W

  const Jet& weights() const { return weightnorm_ ? w_normed_ : w_; }

  void normalize_rows(int m, Scratch& s) {
    jet_hadamard(w_, w_, s.t0);
    jet_row_sums(s.t0, row_sq_);
    power_derivatives(row_sq_.c[0], -0.5, m, s.derivs);
    jet_apply(row_sq_, s.derivs, row_scale_);
    jet_scale_rows(w_, row_scale_, w_normed_);
  }

  // From Ḡ = ∂/∂(r ⊙ W) in s.grad_w: ∂/∂W = r ⊙ Ḡ + 2 W ⊙ (Σ_j Ḡ ⊙ W) ⊙ dr/dn.
  void write_normalized_weight_gradient(const BackwardPass& pass, Scratch& s) const {
    jet_hadamard(s.grad_w, w_, s.t0);
    jet_row_sums(s.t0, s.t1);
    power_derivatives(row_sq_.c[0], -0.5, pass.m + 1, s.derivs);
    jet_apply(row_sq_, s.derivs + 1, s.t2);  // dr/dn as a jet
    jet_hadamard(s.t1, s.t2, s.t3);
    jet_scale_rows(w_, s.t3, s.t0);
    jet_scale_rows(s.grad_w, row_scale_, s.t1);
    jet_axpy(2.0, s.t0, s.t1);
    pass.write(s.t1, l_.w_offset, l_.out, l_.in);
  }
};

}  // namespace

// dense(OUT) or dense(OUT, weightnorm=on|off).
std::unique_ptr<Layer> make_dense(const LayerSpec& spec, const Shape& in) {
  const auto refuse = [&] { spec.refuse("dense(OUT[, weightnorm=on|off]) with a whole OUT > 0"); };
  if (spec.args.empty() || spec.args.size() > 2) refuse();
  const long out = spec.whole(spec.args[0], "dense(OUT[, weightnorm=on|off]) with a whole OUT > 0");
  const std::string option = spec.args.size() == 2 ? spec.args[1] : "weightnorm=off";
  if (option != "weightnorm=on" && option != "weightnorm=off") refuse();
  if (!in.is_vector()) spec.refuse("a vector input, got " + in.text() + " (flatten first)");
  return std::make_unique<Dense>(in.size(), static_cast<Index>(out), option == "weightnorm=on");
}

}  // namespace eomlab
