// A network with a flat parameter vector θ and its exact derivatives: the one model type outside
// src/model (DESIGN.md §2.6). Inside it is a sequence of layers and a loss head (model/layer.hpp), each
// layer with its slice of θ in order; make_model builds it from the configuration (today the MLP
// shorthand: widths, activation, normalization, loss; model/mlp.hpp).
//
// Loss of a batch: scale * Σ_i ℓ(x_i, y_i; θ), ℓ the configured loss of the network's outputs; `scale`
// is 1/N_total for a shard of N_total. Weight decay is not part of the model (see diff/objective.hpp).
// Invariants: every derivative is exact (forward-over-reverse jets, model/jet.hpp); a fast path, where
// one applies, gives the reference path's results to rounding; the same inputs give the same bits.
// Not thread-safe: evaluations reuse a mutable workspace.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/dataset.hpp"
#include "core/reducer.hpp"
#include "core/shape.hpp"
#include "core/types.hpp"
#include "model/held_size.hpp"

namespace eomlab {

// Names the point and the batch of an evaluation, so that the fast path may keep the primal passes
// (forward and backward) of several batches at one θ and reuse them: e.g. minibatch SGD's eom1 field, m
// batch gradients then m batch HVPs at the same θ. The caller guarantees that evaluations with equal keys
// are at the same θ and batch; the default key names nothing and is never reused. Batches are small
// indices (0, 1, ...: the fast path keeps a table of them).
struct PassKey {
  long point = 0, batch = 0;
  bool named() const { return point != 0; }
  bool operator==(const PassKey& o) const { return point == o.point && batch == o.batch; }
};

// A named contiguous piece of the flat parameter vector (one W or one b, or an invariant block).
// The first layer of sgd's eom1 through the data's Gram matrix (Model::prefix_direction_sum), for N
// samples in m blocks: mask(i, j) = x_iᵀ x_j (1[block(i) < block(j)] − ½), and one coefficient c_k per block.
struct FirstLayerGram {
  Matrix mask;
  std::vector<double> c;
};

struct ParameterBlock {
  std::string name;
  Index offset = 0, size = 0, rows = 0, cols = 0;
};

// A linear functional of θ: Σ_k θ[offset + k·stride], k < count (e.g. a column sum of a row-major W).
struct ParameterSum {
  std::string name;
  Index offset = 0, stride = 1, count = 0;
};

class Model {
 public:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  ~Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;

  Index n_params() const;
  Shape input_shape() const;
  Index n_outputs() const;  // logits or predictions per sample
  Index activation_size() const;  // every layer's outputs per sample, summed (sets samples_per_pass)
  HeldSize held_size() const;     // what a pass holds per sample (for memory estimates)
  HeldParameters held_parameters() const;  // and per jet component, of parameter size (Layer::held_parameters)
  // The samples one pass of an evaluation in m directions takes at most: the jet path goes through a
  // batch in chunks so its jets stay within a fixed budget (about 1 GiB), except when the model's
  // statistics couple the samples. Results depend only on the model, m and the batch.
  Index samples_per_pass(int directions) const;
  // The layers as model.architecture writes them, resolved: "dense(32), tanh, dense(4)".
  std::string architecture() const;
  // What the network is, for provenance and messages, e.g. "16 -> dense(32), tanh, dense(4) -> cross_entropy".
  std::string description() const;
  // Whether a layer's statistics sum over all samples (batchnorm). Such a model evaluates a data set
  // sharded over ranks only with `shards` summing over them, and every rank evaluates together (also
  // on an empty shard). The reducer must outlive the model's evaluations.
  bool couples_samples() const;
  void share_statistics(const Reducer& shards);
  // Every parameter tensor (W, b, ...) in layout order; together they tile θ.
  std::vector<ParameterBlock> blocks() const;
  // The blocks on which the loss is scale-invariant (DESIGN.md §1.4); empty if there are none.
  std::vector<ParameterBlock> scale_invariant_blocks() const;
  // Directions along which the loss is translation-invariant (the output layer under softmax
  // cross-entropy, or the layer before a layernorm at the end), as linear functionals of θ; empty if none.
  std::vector<ParameterSum> translation_components() const;
  // Evaluate everything on the jet path, even where the fast path applies, and each layer on its own (no
  // fused passes): the reference that the fast paths are tested against.
  void use_reference_path(bool reference);

  // Default initialisation from a portable RNG stream of `seed`.
  Vector initial_parameters(std::uint64_t seed) const;
  // Network outputs (n_outputs x samples).
  Matrix outputs(const Vector& theta, const Matrix& x) const;

  // Returns scale * Σ ℓ without derivatives.
  double loss_value(const Vector& theta, const Dataset& batch, double scale) const;
  // Returns scale * Σ ℓ; writes the gradient of that quantity to grad.
  double loss_and_gradient(const Vector& theta, const Dataset& batch, double scale, Vector& grad,
                           PassKey pass = {}) const;
  // Writes (scale * Σ ∇²ℓ) v. A gradient or HVP given the same `pass` earlier may have left its forward
  // and backward passes to reuse (same bits either way).
  void hessian_vector(const Vector& theta, const Vector& v, const Dataset& batch, double scale, Vector& hv,
                      PassKey pass = {}) const;
  // A batch in consecutive blocks of samples, block k being columns [ends[k-1], ends[k]) (ends[-1] = 0;
  // e.g. an epoch's minibatches laid out in order), evaluated in one pass where the fast path applies
  // (evaluates_blocks_together(); elsewhere these throw Error): grads[k] = the gradient of scale * Σ ℓ over
  // block k, and out = Σ_k (scale * Σ_{block k} ∇²ℓ) v[k]; each agrees with the blocks evaluated one by
  // one to rounding. A block may be empty (its gradient is zero).
  bool evaluates_blocks_together() const;
  void block_gradients(const Vector& theta, const Dataset& batch, const std::vector<Index>& ends, double scale,
                       const std::vector<Vector*>& grads, PassKey pass = {}) const;
  void hessian_vector_sum(const Vector& theta, const std::vector<const Vector*>& v, const Dataset& batch,
                          const std::vector<Index>& ends, double scale, Vector& out, PassKey pass = {}) const;
  // sgd's eom1 sum on the fast path, for one rank's whole data in m blocks with gradients g_k (of
  // scale * Σ ℓ over block k): gradient_sum = Σ_k g_k, *weighted_sum = Σ_k (m/2 − 1 − k) g_k when given,
  // and out = Σ_k H_k w_k with w_k = Σ_{i<k} g_i − ½ Σ_i g_i + gram.c[k] θ. The first layer's weight
  // products run through gram.mask (DensePath::prefix_direction_sum). Agrees with block_gradients and
  // hessian_vector_sum to rounding.
  void prefix_direction_sum(const Vector& theta, const Dataset& batch, const std::vector<Index>& ends, double scale,
                            const FirstLayerGram& gram, Vector& gradient_sum, Vector* weighted_sum, Vector& out,
                            PassKey pass = {}) const;
  // Writes (scale * Σ ∇³ℓ)[u, v].
  void third_order(const Vector& theta, const Vector& u, const Vector& v, const Dataset& batch, double scale,
                   Vector& out) const;
  // Hu and T[u, u] from one pass: the jet in directions (u, u) carries Hu in its first-order component.
  void hessian_and_third_order(const Vector& theta, const Vector& u, const Dataset& batch, double scale, Vector& hu,
                               Vector& tuu) const;

 private:
  std::unique_ptr<Impl> impl_;
};

// The model a configuration describes: model.architecture for samples of shape `input` (DESIGN.md §3.6),
// or else the MLP of model.layers, model.activation and model.normalize (whose input is its first width);
// with model.loss. Throws InputError naming model.architecture and the layer for an impossible
// architecture, Error for an impossible MLP.
Model make_model(const ModelConfig& config, const Shape& input = Shape());
// Cross-entropy over fewer than 2 outputs is 0 whatever θ: an architecture under it must give 2 or more.
// Throws InputError naming model.architecture. (An MLP's last width is data.n_classes, checked with it.)
void require_classes_for_cross_entropy(const ModelConfig& config, const Model& model);

}  // namespace eomlab
