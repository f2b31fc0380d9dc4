// flatten: C x H x W → a vector of C·H·W features. A sample's column already lists its features in that
// (torch's row-major) order, so the jets pass through unchanged; only the shape the next layer sees
// changes.
#include "model/layer.hpp"

namespace eomlab {
namespace {

class Flatten final : public Layer {
 public:
  explicit Flatten(const Shape& in) : size_(in.size()) {}

  std::string text() const override { return "flatten"; }
  Shape output_shape() const override { return size_; }

  void forward(const ForwardPass&, const Jet& in, Jet& out, Scratch&) override { out = in; }
  void backward(const BackwardPass&, const Jet&, const Jet& delta, Jet* delta_in, Scratch&) override {
    if (delta_in) *delta_in = delta;
  }

 private:
  Index size_;
};

}  // namespace

std::unique_ptr<Layer> make_flatten(const LayerSpec& spec, const Shape& in) {
  if (!spec.args.empty()) spec.refuse("no arguments");
  return std::make_unique<Flatten>(in);
}

}  // namespace eomlab
