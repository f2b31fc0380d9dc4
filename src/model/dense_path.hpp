// The fast path of a Model's loss, gradient and Hessian-vector product, for a network of dense layers
// with one elementwise activation between consecutive ones (an MLP without normalization).
//
// Every derivative level is plain GEMMs on θ in place (a row-major W is a column-major Wᵀ, so neither
// W nor its gradient is copied) plus fused elementwise passes; buffers are kept between calls, so no
// allocation happens once the shapes are known. The jet path (the Model's layers, model/layer.hpp) is
// the reference: tests/unit/test_dense_path.cpp holds this one to it.
//
// The primal state of a gradient or HVP (activations, σ', σ'', back-propagated δ) is kept under the
// evaluation's PassKey (model/model.hpp): the passes of every batch at the latest θ, within a memory
// budget. A Hessian-vector product with the key of a kept pass runs only the tangent passes. The bits do
// not depend on whether it was reused.
#pragma once
#include <array>
#include <optional>
#include <utility>
#include <vector>

#include "core/config.hpp"
#include "core/dataset.hpp"
#include "core/types.hpp"
#include "model/model.hpp"

namespace eomlab {

// z = W a + b with W (out x in, row-major) at w_offset and b at b_offset in θ.
struct DenseLayer {
  Index in = 0, out = 0;
  Index w_offset = 0, b_offset = 0;
};

// The network DensePath would run, as a model's layers and head describe themselves to it in order;
// any other layer or head rejects the plan.
struct DensePathPlan {
  std::vector<DenseLayer> layers;
  std::optional<Activation> activation;  // of every hidden layer
  std::optional<LossKind> loss;
  bool rejected = false;
  bool after_dense = false;  // the last layer added was dense

  void add_dense(const DenseLayer& layer);  // rejected right after another dense layer
  void add_activation(Activation a);        // rejected unless right after a dense layer, and one kind only
  void set_loss(LossKind kind) { loss = kind; }
  void reject() { rejected = true; }
  // Dense layers and activations alternating, from a dense layer to a dense layer, then a loss.
  bool usable() const { return !rejected && after_dense && loss.has_value(); }
};

class DensePath {
 public:
  // `plan` must be usable().
  explicit DensePath(const DensePathPlan& plan);

  // Each returns scale * Σ ℓ over the batch, like Model's methods of the same names.
  double loss(const Vector& theta, const Dataset& batch, double scale);
  double loss_and_gradient(const Vector& theta, const Dataset& batch, double scale, Vector& grad, PassKey pass);
  void hessian_vector(const Vector& theta, const Vector& v, const Dataset& batch, double scale, Vector& hv,
                      PassKey pass);
  // The batch in consecutive blocks of samples (Model::block_gradients): one forward and backward pass
  // over all of them, each block's parameter gradient from its own columns.
  void block_gradients(const Vector& theta, const Dataset& batch, const std::vector<Index>& ends, double scale,
                       const std::vector<Vector*>& grads, PassKey pass);
  // out = Σ_k H_k v[k] (Model::hessian_vector_sum): the products shared by all blocks (with W, and the
  // weight gradients' sums over samples) over the whole batch; only those with a block's direction per block.
  void hessian_vector_sum(const Vector& theta, const std::vector<const Vector*>& v, const Dataset& batch,
                          const std::vector<Index>& ends, double scale, Vector& out, PassKey pass);
  // For the m blocks' gradients g_k: gradient_sum = Σ_k g_k, *weighted_sum = Σ_k (m/2 − 1 − k) g_k (when
  // given) and out = Σ_k H_k w_k with w_k = Σ_{i<k} g_i − ½ Σ_i g_i + c_k θ (Model::prefix_direction_sum).
  // The first layer's weight products with the w_k are one product Δ·mask instead of m rank-b updates
  // and m products with w_k's block; the other layers' are made block by block as above.
  void prefix_direction_sum(const Vector& theta, const Dataset& batch, const std::vector<Index>& ends, double scale,
                            const FirstLayerGram& gram, Vector& gradient_sum, Vector* weighted_sum, Vector& out,
                            PassKey pass);

 private:
  // Per layer: pre-activations z; for hidden layers σ(z), σ'(z), σ''(z) and e = W_nextᵀ δ_next;
  // δ = ∂(scale Σℓ)/∂z; the softmax's probabilities. Those of `pass` at `scale` when `pass` is named.
  struct Primal {
    PassKey pass;
    double scale = 0;
    std::vector<std::array<Matrix, 3>> activation;  // σ, σ', σ'' of hidden layers
    std::vector<Matrix> z, e, delta;
    Matrix probabilities;
    double bytes() const;
  };

  std::vector<DenseLayer> layers_;
  Activation activation_kind_;
  LossKind loss_;
  // The slots: at least one, more while slot_bytes_ (the largest pass seen) times their number stays
  // within the budget. The passes of θ number point_ fill slots [0, used_); slot_of_batch_[b] is
  // (point, slot) of batch b's, current when its point is point_ (a table: no allocation once every
  // batch has been seen).
  std::vector<Primal> primals_;
  double slot_bytes_ = 0;
  long point_ = 0;
  std::size_t used_ = 0;
  std::vector<std::pair<long, std::size_t>> slot_of_batch_;
  // The tangent (directional derivative) of each primal matrix, for the HVP. Every buffer keeps one
  // shape per batch size, so none is reallocated once the batch sizes are known.
  std::vector<Matrix> z_dot_, a_dot_, e_dot_, delta_dot_;
  // prefix_direction_sum's block gradients, turned into its directions in place, and the weighted δ.
  std::vector<Vector> blocks_;
  std::vector<Vector*> block_outputs_;
  std::vector<const Vector*> directions_;
  Matrix weighted_delta_;
  Vector running_;
  Eigen::RowVectorXd column_max_, column_sum_;

  // The kept primal of `pass` at `scale`, or null.
  const Primal* kept(PassKey pass, double scale) const;
  const std::size_t* slot_of(long batch) const;
  // Where to compute a new primal for `pass` in O(1): the first slot for an unnamed pass; its batch's
  // slot at this θ, else a free slot, a new one while the budget allows, else the first (whose kept
  // pass is then lost: a later reuse finds a pass of another key there and remakes it).
  Primal& slot_for(PassKey pass);
  void add_slot();
  // A batch in blocks is cut at `ends`: block k is columns [ends[k-1], ends[k]) (ends[-1] = 0).
  std::vector<Index> whole_ends_;  // {n}: a batch of n samples as one block
  std::vector<Vector*> one_gradient_;
  std::vector<const Vector*> one_direction_;

  double forward_and_head(Primal& p, const Vector& theta, const Dataset& batch, double scale);
  // Back-propagates δ; writes block k's gradient to *grads[k] when grads is given (without the first
  // layer's weights, left as they were, when first_layer_weights is false).
  void backward(Primal& p, const Vector& theta, const Matrix& x, const std::vector<Index>& ends,
                Vector* const* grads, bool first_layer_weights);
  // Forward pass, head and backward pass into a slot for `pass`.
  const Primal& primal(const Vector& theta, const Dataset& batch, double scale, const std::vector<Index>& ends,
                       Vector* const* grads, PassKey pass, double* loss = nullptr, bool first_layer_weights = true);
  // hessian_vector_sum's tangent passes on the primal p; with `gram`, the first layer's weight products
  // as prefix_direction_sum makes them.
  void tangent_sum(const Primal& p, const Vector& theta, const std::vector<const Vector*>& v, const Dataset& batch,
                   const std::vector<Index>& ends, double scale, Vector& hv, const FirstLayerGram* gram);
  // The batch as one block (whole_ends_).
  const std::vector<Index>& whole(const Dataset& batch);
};

}  // namespace eomlab
