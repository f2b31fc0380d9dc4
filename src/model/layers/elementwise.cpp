// tanh | softplus | gelu | relu | silu: the activation applied to every entry (model/activation.hpp); no
// parameters. The forward pass keeps σ'(input) as a jet for the backward pass.
#include "model/activation.hpp"
#include "model/dense_path.hpp"
#include "model/layer.hpp"

namespace eomlab {
namespace {

class Elementwise final : public Layer {
 public:
  Elementwise(Activation kind, const Shape& shape) : kind_(kind), shape_(shape) {}

  std::string text() const override { return to_string(kind_); }
  Shape output_shape() const override { return shape_; }
  void plan_dense_path(DensePathPlan& plan) const override { plan.add_activation(kind_); }

  void forward(const ForwardPass& pass, const Jet& in, Jet& out, Scratch& s) override {
    apply_activation(kind_, in.c[0], pass.m + 1, s.derivs);  // σ' is needed as a jet of m directions
    jet_apply(in, s.derivs, out);
    jet_apply(in, s.derivs + 1, slope_);
  }
  void backward(const BackwardPass&, const Jet&, const Jet& delta, Jet* delta_in, Scratch&) override {
    if (delta_in) jet_hadamard(slope_, delta, *delta_in);
  }

 private:
  Activation kind_;
  Shape shape_;
  Jet slope_;
};

}  // namespace

std::unique_ptr<Layer> make_elementwise(const LayerSpec& spec, const Shape& in) {
  if (!spec.args.empty()) spec.refuse("no arguments");
  for (Activation a : {Activation::tanh, Activation::softplus, Activation::gelu, Activation::relu, Activation::silu})
    if (spec.name == to_string(a)) return std::make_unique<Elementwise>(a, in);
  spec.refuse("an activation");
}

}  // namespace eomlab
