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
    // σ and σ' go straight into the values of out and slope_; σ' is needed as a jet of m directions, so
    // σ'' .. σ^(m+1) go to scratch.
    out.reset(in.m);
    slope_.reset(in.m);
    if (pass.fuse && kind_ == Activation::tanh && in.m == 1 && in.nz[0] && in.nz[1]) {  // an HVP's: one pass
      tanh_first_order_jet(in.c[0], in.c[1], out.set(0, in.rows(), in.cols()), slope_.set(0, in.rows(), in.cols()),
                           out.set(1, in.rows(), in.cols()), slope_.set(1, in.rows(), in.cols()));
      return;
    }
    BufferRefs d{{&out.set(0, in.rows(), in.cols()), &slope_.set(0, in.rows(), in.cols()), &s.derivs[2], &s.derivs[3], &s.derivs[4]}};
    apply_activation(kind_, in.c[0], pass.m + 1, d);
    jet_apply_in_place(in, d.p, out);
    jet_apply_in_place(in, d.p + 1, slope_);
  }
  void backward(const BackwardPass&, const Jet&, const Jet& delta, Jet* delta_in, Scratch&) override {
    if (delta_in) jet_hadamard(slope_, delta, *delta_in);
  }
  const Jet* input_delta_factor() const override { return &slope_; }

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
