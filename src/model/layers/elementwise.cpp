// tanh | softplus | gelu | relu | silu: the activation applied to every entry (model/activation.hpp); no
// parameters. The forward pass keeps σ'(input) as a jet for the backward pass.
#include "model/activation.hpp"
#include "model/buffer.hpp"
#include "model/dense_path.hpp"
#include "model/layer.hpp"

namespace eomlab {
namespace {

class Elementwise final : public Layer {
 public:
  Elementwise(Activation kind, const Shape& shape) : kind_(kind), shape_(shape) {}

  std::string text() const override { return to_string(kind_); }
  Shape output_shape() const override { return shape_; }
  Index held_size() const override { return 2 * shape_.size(); }  // σ and σ'
  void plan_dense_path(DensePathPlan& plan) const override { plan.add_activation(kind_); }

  void forward(const ForwardPass& pass, const Jet& in, Jet& out, Scratch& s) override { apply(pass, in, out, slope_, s); }

  // Planes of 8k pixels: the vectorized passes over a plane take the same paths as over the whole batch
  // (no scalar remainders), so the bits agree.
  PlaneRole plane_role() const override {
    return !shape_.is_vector() && shape_.height * shape_.width % 8 == 0 ? PlaneRole::map : PlaneRole::none;
  }
  void map_plane(const ForwardPass& pass, const Jet& in, Jet& out, Index s, Index channel, Index cols, Scratch& scratch) override {
    apply(pass, in, out, plane_slope_, scratch);
    const Index pixels = in.rows();
    if (s == 0 && channel == 0) {
      slope_.reset(plane_slope_.m);
      for (int c = 0; c < slope_.size(); ++c)
        if (plane_slope_.nz[static_cast<std::size_t>(c)]) slope_.set(c, shape_.size(), cols);
    }
    // The batch's slope is read again only in the backward pass: it is not brought into the cache.
    for (int c = 0; c < slope_.size(); ++c)
      if (slope_.nz[static_cast<std::size_t>(c)])
        copy_streaming(plane_slope_.c[static_cast<std::size_t>(c)].data(), pixels,
                       slope_.c[static_cast<std::size_t>(c)].col(s).data() + channel * pixels);
  }
  void backward(const BackwardPass&, const Jet&, const Jet& delta, Jet* delta_in, Scratch&) override {
    if (delta_in) jet_hadamard(slope_, delta, *delta_in);
  }
  const Jet* input_delta_factor() const override { return &slope_; }

 private:
  Activation kind_;
  Shape shape_;
  Jet slope_, plane_slope_;

  // σ and σ' go straight into the values of out and slope; σ' is needed as a jet of m directions, so
  // σ'' .. σ^(m+1) go to scratch.
  void apply(const ForwardPass& pass, const Jet& in, Jet& out, Jet& slope, Scratch& s) const {
    out.reset(in.m);
    slope.reset(in.m);
    if (pass.fuse && kind_ == Activation::tanh && in.m == 1 && in.nz[0] && in.nz[1]) {  // an HVP's: one pass
      tanh_first_order_jet(in.c[0], in.c[1], out.set(0, in.rows(), in.cols()), slope.set(0, in.rows(), in.cols()),
                           out.set(1, in.rows(), in.cols()), slope.set(1, in.rows(), in.cols()));
      return;
    }
    BufferRefs d{{&out.set(0, in.rows(), in.cols()), &slope.set(0, in.rows(), in.cols()), &s.derivs[2], &s.derivs[3], &s.derivs[4]}};
    apply_activation(kind_, in.c[0], pass.m + 1, d);
    jet_apply_in_place(in, d.p, out);
    jet_apply_in_place(in, d.p + 1, slope);
  }
};

}  // namespace

std::unique_ptr<Layer> make_elementwise(const LayerSpec& spec, const Shape& in) {
  if (!spec.args.empty()) spec.refuse("no arguments");
  for (Activation a : {Activation::tanh, Activation::softplus, Activation::gelu, Activation::relu, Activation::silu})
    if (spec.name == to_string(a)) return std::make_unique<Elementwise>(a, in);
  spec.refuse("an activation");
}

}  // namespace eomlab
