// mse: half the squared error of the outputs z against the targets t, ℓ = ½‖z - t‖².
#include "model/dense_path.hpp"
#include "model/layer.hpp"

namespace eomlab {
namespace {

class SquaredError final : public LossHead {
 public:
  std::string text() const override { return "mse"; }
  void plan_dense_path(DensePathPlan& plan) const override { plan.set_loss(LossKind::mse); }

  // δ = z - t.
  double forward(int, const Jet& z, const Dataset& batch, Jet& delta, Scratch&) override {
    delta = z;
    delta.c[0] -= batch.targets;
    return 0.5 * delta.c[0].squaredNorm();
  }
};

}  // namespace

std::unique_ptr<LossHead> make_squared_error() { return std::make_unique<SquaredError>(); }

}  // namespace eomlab
