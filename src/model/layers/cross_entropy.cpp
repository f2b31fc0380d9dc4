// cross_entropy: softmax cross-entropy of the logits z against the class labels,
// ℓ = logsumexp(z) - z_label, computed with each sample's largest logit subtracted. Adding one constant
// to every logit leaves ℓ unchanged.
#include <cmath>

#include "model/dense_path.hpp"
#include "model/layer.hpp"

namespace eomlab {
namespace {

class CrossEntropy final : public LossHead {
 public:
  std::string text() const override { return "cross_entropy"; }
  bool invariant_to_output_shift() const override { return true; }
  void plan_dense_path(DensePathPlan& plan) const override { plan.set_loss(LossKind::cross_entropy); }

  // δ = softmax(z) - onehot(label), as a jet through exp and 1/Σ.
  double forward(int m, const Jet& z, const Dataset& batch, Jet& delta, Scratch& s) override {
    const Buffer& z0 = z.c[0];
    Eigen::RowVectorXd& mx = s.column_max;
    mx = z0.colwise().maxCoeff();
    s.derivs[0] = (z0.rowwise() - mx).array().exp().matrix();
    for (int k = 1; k <= m; ++k) s.derivs[k] = s.derivs[0];
    jet_apply(z, s.derivs, s.t0);  // e = exp(z - max): every derivative of exp is exp
    jet_column_sums(s.t0, s.t1);   // Σ e
    const Buffer& sums = s.t1.c[0];
    double loss = 0.0;
    for (Index i = 0; i < z0.cols(); ++i) loss += std::log(sums(0, i)) + mx[i] - z0(label(batch, i), i);
    power_derivatives(s.t1.c[0], -1.0, m, s.derivs2);
    jet_apply(s.t1, s.derivs2, s.t2);       // 1/Σ e
    jet_scale_columns(s.t0, s.t2, delta);  // softmax probabilities
    for (Index i = 0; i < z0.cols(); ++i) delta.c[0](label(batch, i), i) -= 1.0;
    return loss;
  }

 private:
  static Index label(const Dataset& batch, Index i) {
    return static_cast<Index>(batch.labels[static_cast<std::size_t>(i)]);
  }
};

}  // namespace

std::unique_ptr<LossHead> make_cross_entropy() { return std::make_unique<CrossEntropy>(); }

}  // namespace eomlab
