// residual(LAYER, ...): y = x + f(x), f the inner layers in order (a LayerSequence with its own slice
// of θ); f must keep the shape. Its parametrized layers are named "<name>.<k>".
#include "model/architecture.hpp"
#include "model/sequence.hpp"

namespace eomlab {
namespace {

class Residual final : public Layer {
 public:
  explicit Residual(LayerSequence inner) : inner_(std::move(inner)) {}

  std::string text() const override { return "residual(" + inner_.text() + ")"; }
  Shape output_shape() const override { return inner_.input_shape(); }
  Index n_params() const override { return inner_.n_params(); }
  void place(Index offset, const std::string& name) override { inner_.place(offset, name + "."); }
  std::vector<ParameterBlock> blocks() const override { return inner_.blocks(); }
  void initialize(Rng& rng, Vector& theta) const override { inner_.initialize(rng, theta); }
  std::vector<ParameterBlock> scale_invariant_blocks() const override { return inner_.scale_invariant_blocks(); }
  bool couples_samples() const override { return inner_.couples_samples(); }
  Index activation_size() const override { return n_outputs() + inner_.activation_size(); }
  Index held_size() const override { return 2 * n_outputs() + inner_.held_size().total(); }  // and inner_delta_
  HeldParameters held_parameters() const override { return inner_.held_parameters(); }

  void forward(const ForwardPass& pass, const Jet& in, Jet& out, Scratch& s) override {
    inner_.forward(pass, in, s);
    out.reset(pass.m);
    jet_axpy(1.0, in, out);
    jet_axpy(1.0, inner_.output(), out);
  }
  void backward(const BackwardPass& pass, const Jet& in, const Jet& delta, Jet* delta_in, Scratch& s) override {
    inner_delta_.reset(delta.m);
    jet_axpy(1.0, delta, inner_delta_);
    inner_.backward(pass, in, inner_delta_, delta_in != nullptr, s);
    if (!delta_in) return;
    delta_in->reset(delta.m);
    jet_axpy(1.0, delta, *delta_in);
    jet_axpy(1.0, inner_delta_, *delta_in);
  }

 private:
  LayerSequence inner_;
  Jet inner_delta_;
};

}  // namespace

std::unique_ptr<Layer> make_residual(const LayerSpec& spec, const Shape& in) {
  if (spec.args.empty()) spec.refuse("residual(LAYER, ...) with at least one layer");
  std::vector<LayerSpec> inner;
  for (const std::string& arg : spec.args) inner.push_back(parse_layer(arg));
  LayerSequence body(inner, in);
  if (body.output_shape() != in)
    spec.refuse("inner layers that keep the shape " + in.text() + ", got " + body.output_shape().text());
  return std::make_unique<Residual>(std::move(body));
}

}  // namespace eomlab
