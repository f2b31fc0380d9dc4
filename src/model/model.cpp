#include "model/model.hpp"

#include <algorithm>
#include <limits>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "model/blas.hpp"
#include "model/dense_path.hpp"
#include "model/layer.hpp"
#include "model/mlp.hpp"
#include "model/architecture.hpp"
#include "model/sequence.hpp"

namespace eomlab {

// The layers in order and the loss head; the jet path's workspace (the input as a jet, δ of the
// backward sweep); the fast path where it applies.
struct Model::Impl {
  LayerSequence body;
  std::unique_ptr<LossHead> head;
  std::unique_ptr<DensePath> fast;  // null where the fast path does not apply, or when told to use the reference
  bool reference = false;           // told to: no fast path, no fused layers
  const Reducer* shards;
  int m = 0;
  Jet input, delta;
  Scratch scratch;

  Impl(const Shape& in, const std::vector<LayerSpec>& architecture, const std::string& loss);
  void use_reference_path(bool use_reference);
  void forward(const ForwardPass& pass, const Matrix& x);
  double head_loss(const Dataset& batch, double scale);
  // Writes the top component of the gradient jet to out, and its component {direction 1} to first.
  void backward(Vector& out, Vector* first);
  double evaluate(const Vector& theta, const Vector* const* directions, int n_directions, const Dataset& batch,
                  double scale, Vector* out, Vector* first = nullptr);
  double evaluate_whole(const Vector& theta, const Vector* const* directions, int n_directions, const Dataset& batch,
                        double scale, Vector* out, Vector* first);
  Index chunk_samples(int n_directions) const;

  Dataset part;                 // a chunk of the batch
  Vector part_out, part_first;  // its gradient jet's components
};

namespace {
// What the jets of one pass may hold: a chunk's every layer output in every component, about four times
// (values, kept derivatives, scratch).
constexpr double chunk_budget_bytes = 1024.0 * 1024.0 * 1024.0;

// Samples [begin, begin + count) of `batch` into `part` (storage reused).
void copy_samples(const Dataset& batch, Index begin, Index count, Dataset& part) {
  part.x = batch.x.middleCols(begin, count);
  part.sample_shape = batch.sample_shape;
  if (batch.has_labels())
    part.labels.assign(batch.labels.begin() + begin, batch.labels.begin() + begin + count);
  else
    part.targets = batch.targets.middleCols(begin, count);
}
}  // namespace

namespace {
const LocalReducer one_shard;
}

Model::Impl::Impl(const Shape& in, const std::vector<LayerSpec>& architecture, const std::string& loss)
    : body(architecture, in), head(make_loss_head(loss)), shards(&one_shard) {
  use_one_blas_thread();
  body.place(0, "layer");
  use_reference_path(false);
}

void Model::Impl::use_reference_path(bool use_reference) {
  reference = use_reference;
  fast.reset();
  if (reference) return;
  DensePathPlan plan;
  for (const auto& layer : body.layers()) layer->plan_dense_path(plan);
  head->plan_dense_path(plan);
  if (plan.usable()) fast = std::make_unique<DensePath>(plan);
}

void Model::Impl::forward(const ForwardPass& pass, const Matrix& x) {
  m = pass.m;
  input.set_constant(m, x);
  body.forward(pass, input, scratch);
}

double Model::Impl::head_loss(const Dataset& batch, double scale) {
  const double loss = head->forward(m, body.output(), batch, delta, scratch);
  for (int s = 0; s < delta.size(); ++s)
    if (delta.nz[static_cast<std::size_t>(s)]) delta.c[static_cast<std::size_t>(s)] *= scale;
  return scale * loss;
}

void Model::Impl::backward(Vector& out, Vector* first) {
  out.resize(body.n_params());
  if (first) first->resize(body.n_params());
  body.backward({m, out, first, *shards, !reference}, input, delta, false, scratch);
}

Index Model::Impl::chunk_samples(int n_directions) const {
  if (body.couples_samples()) return std::numeric_limits<Index>::max();  // batchnorm needs the whole shard
  const double per_sample = 4.0 * 8.0 * static_cast<double>((1 << (n_directions + 1)) * body.activation_size());
  return std::max<Index>(1, static_cast<Index>(chunk_budget_bytes / per_sample));
}

// The batch in chunks of samples when its jets would be larger than the budget (the loss and the
// gradient's components are sums over samples), else in one pass.
double Model::Impl::evaluate(const Vector& theta, const Vector* const* directions, int n_directions,
                             const Dataset& batch, double scale, Vector* out, Vector* first) {
  const Index n = batch.n_samples(), chunk = chunk_samples(n_directions);
  if (chunk >= n) return evaluate_whole(theta, directions, n_directions, batch, scale, out, first);
  double loss = 0.0;
  if (out) out->setZero(body.n_params());
  if (first) first->setZero(body.n_params());
  for (Index begin = 0; begin < n; begin += chunk) {
    copy_samples(batch, begin, std::min(chunk, n - begin), part);
    loss += evaluate_whole(theta, directions, n_directions, part, scale, out ? &part_out : nullptr,
                           first ? &part_first : nullptr);
    if (out) *out += part_out;
    if (first) *first += part_first;
  }
  return loss;
}

double Model::Impl::evaluate_whole(const Vector& theta, const Vector* const* directions, int n_directions,
                                   const Dataset& batch, double scale, Vector* out, Vector* first) {
  forward({theta, directions, n_directions, *shards, !reference}, batch.x);
  const double loss = head_loss(batch, scale);
  if (out) backward(*out, first);
  return loss;
}

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

Index Model::n_params() const { return impl_->body.n_params(); }
Shape Model::input_shape() const { return impl_->body.input_shape(); }
Index Model::n_outputs() const { return impl_->body.output_shape().size(); }
Index Model::activation_size() const { return impl_->body.activation_size(); }
HeldSize Model::held_size() const { return impl_->body.held_size(); }
HeldParameters Model::held_parameters() const { return impl_->body.held_parameters(); }
Index Model::samples_per_pass(int directions) const { return impl_->chunk_samples(directions); }
std::string Model::architecture() const { return impl_->body.text(); }

std::string Model::description() const {
  return impl_->body.input_shape().text() + " -> " + impl_->body.text() + " -> " + impl_->head->text();
}

bool Model::couples_samples() const { return impl_->body.couples_samples(); }
void Model::share_statistics(const Reducer& shards) { impl_->shards = &shards; }

std::vector<ParameterBlock> Model::blocks() const { return impl_->body.blocks(); }
std::vector<ParameterBlock> Model::scale_invariant_blocks() const { return impl_->body.scale_invariant_blocks(); }

// The shifts of the last layer's outputs under a head that ignores them (softmax), or of the outputs of the
// layer before a layernorm at the end, whatever the head.
std::vector<ParameterSum> Model::translation_components() const {
  const auto& layers = impl_->body.layers();
  if (layers.size() >= 2 && layers.back()->input_shift_invariant()) return layers[layers.size() - 2]->output_shift_components();
  if (!impl_->head->invariant_to_output_shift()) return {};
  return impl_->body.last().output_shift_components();
}

void Model::use_reference_path(bool reference) { impl_->use_reference_path(reference); }

Vector Model::initial_parameters(std::uint64_t seed) const {
  Rng rng(seed, rng_stream::init);
  Vector theta(impl_->body.n_params());
  impl_->body.initialize(rng, theta);
  return theta;
}

Matrix Model::outputs(const Vector& theta, const Matrix& x) const {
  impl_->forward({theta, nullptr, 0, *impl_->shards, !impl_->reference}, x);
  return impl_->body.output().c[0];
}

double Model::loss_value(const Vector& theta, const Dataset& batch, double scale) const {
  if (impl_->fast) return impl_->fast->loss(theta, batch, scale);
  return impl_->evaluate(theta, nullptr, 0, batch, scale, nullptr);
}

double Model::loss_and_gradient(const Vector& theta, const Dataset& batch, double scale, Vector& grad,
                                PassKey pass) const {
  if (impl_->fast) return impl_->fast->loss_and_gradient(theta, batch, scale, grad, pass);
  return impl_->evaluate(theta, nullptr, 0, batch, scale, &grad);
}

void Model::hessian_vector(const Vector& theta, const Vector& v, const Dataset& batch, double scale, Vector& hv,
                           PassKey pass) const {
  if (impl_->fast) return impl_->fast->hessian_vector(theta, v, batch, scale, hv, pass);
  const Vector* directions[] = {&v};
  impl_->evaluate(theta, directions, 1, batch, scale, &hv);
}

bool Model::evaluates_blocks_together() const { return impl_->fast != nullptr; }

void Model::block_gradients(const Vector& theta, const Dataset& batch, const std::vector<Index>& ends, double scale,
                            const std::vector<Vector*>& grads, PassKey pass) const {
  if (!impl_->fast) throw Error("Model::block_gradients: only on the dense fast path");
  impl_->fast->block_gradients(theta, batch, ends, scale, grads, pass);
}

void Model::prefix_direction_sum(const Vector& theta, const Dataset& batch, const std::vector<Index>& ends,
                                 double scale, const FirstLayerGram& gram, Vector& gradient_sum, Vector* weighted_sum,
                                 Vector& out, PassKey pass) const {
  if (!impl_->fast) throw Error("Model::prefix_direction_sum: only on the dense fast path");
  impl_->fast->prefix_direction_sum(theta, batch, ends, scale, gram, gradient_sum, weighted_sum, out, pass);
}

void Model::hessian_vector_sum(const Vector& theta, const std::vector<const Vector*>& v, const Dataset& batch,
                               const std::vector<Index>& ends, double scale, Vector& out, PassKey pass) const {
  if (!impl_->fast) throw Error("Model::hessian_vector_sum: only on the dense fast path");
  impl_->fast->hessian_vector_sum(theta, v, batch, ends, scale, out, pass);
}

void Model::third_order(const Vector& theta, const Vector& u, const Vector& v, const Dataset& batch, double scale,
                        Vector& out) const {
  const Vector* directions[] = {&u, &v};
  impl_->evaluate(theta, directions, 2, batch, scale, &out);
}

void Model::hessian_and_third_order(const Vector& theta, const Vector& u, const Dataset& batch, double scale,
                                    Vector& hu, Vector& tuu) const {
  const Vector* directions[] = {&u, &u};
  impl_->evaluate(theta, directions, 2, batch, scale, &tuu, &hu);
}

Model make_model(const ModelConfig& config, const Shape& input) {
  const std::string loss = to_string(config.loss);
  if (!config.architecture.empty()) {
    if (input.channels <= 0) throw Error("model.architecture: expected the input shape of the data");
    try {
      return Model(std::make_unique<Model::Impl>(input, parse_architecture(config.architecture), loss));
    } catch (const Error& e) {
      throw InputError(std::string("model.architecture: ") + e.what());
    }
  }
  const std::vector<LayerSpec> architecture = mlp_architecture(config);
  std::unique_ptr<Model::Impl> impl;
  try {
    impl = std::make_unique<Model::Impl>(config.layers.front(), architecture, loss);
  } catch (const InputError&) {
    throw;
  } catch (const Error& e) {
    throw InputError(std::string("model.layers: ") + e.what());
  }
  Model model(std::move(impl));
  // A normalized MLP always ran on the jet path, also without a hidden layer to normalize (widths d,k):
  // its results stay those bits.
  if (config.normalize != Normalization::none) model.use_reference_path(true);
  return model;
}

void require_classes_for_cross_entropy(const ModelConfig& config, const Model& model) {
  if (!config.architecture.empty() && config.loss == LossKind::cross_entropy && model.n_outputs() < 2)
    throw InputError("model.architecture: the last layer gives " + std::to_string(model.n_outputs()) +
                     " outputs, expected at least 2 for cross_entropy");
}

}  // namespace eomlab
