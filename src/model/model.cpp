#include "model/model.hpp"

#include "core/error.hpp"
#include "core/rng.hpp"
#include "model/blas.hpp"
#include "model/dense_path.hpp"
#include "model/layer.hpp"
#include "model/mlp.hpp"

namespace eomlab {

// The layers in order and the loss head; the jet path's workspace (the input and every layer's output
// as jets, δ of the backward sweep); the fast path where it applies.
struct Model::Impl {
  Index n_inputs = 0, n_params = 0;
  std::vector<std::unique_ptr<Layer>> layers;
  std::unique_ptr<LossHead> head;
  std::unique_ptr<DensePath> fast;  // null where the fast path does not apply, or when told to use the reference
  int m = 0;
  Jet input, delta, next_delta;
  std::vector<Jet> values;  // each layer's output
  Scratch scratch;

  Impl(Index inputs, const std::vector<LayerSpec>& architecture, const std::string& loss);
  void use_reference_path(bool reference);
  void forward(const ForwardPass& pass, const Matrix& x);
  double head_loss(const Dataset& batch, double scale);
  // Writes the top component of the gradient jet to out, and its component {direction 1} to first.
  void backward(Vector& out, Vector* first);
  double evaluate(const Vector& theta, const Vector* const* directions, int n_directions, const Dataset& batch,
                  double scale, Vector* out, Vector* first = nullptr);
};

Model::Impl::Impl(Index inputs, const std::vector<LayerSpec>& architecture, const std::string& loss)
    : n_inputs(inputs), head(make_loss_head(loss)) {
  use_one_blas_thread();
  if (architecture.empty()) throw Error("model: expected at least one layer");
  Index width = inputs;
  int parametrized = 0;
  for (const LayerSpec& spec : architecture) {
    layers.push_back(make_layer(spec, width));
    Layer& layer = *layers.back();
    if (layer.n_params() > 0) layer.place(n_params, "layer" + std::to_string(parametrized++));
    n_params += layer.n_params();
    width = layer.n_outputs();
  }
  values.resize(layers.size());
  use_reference_path(false);
}

void Model::Impl::use_reference_path(bool reference) {
  fast.reset();
  if (reference) return;
  DensePathPlan plan;
  for (const auto& layer : layers) layer->plan_dense_path(plan);
  head->plan_dense_path(plan);
  if (plan.usable()) fast = std::make_unique<DensePath>(plan);
}

void Model::Impl::forward(const ForwardPass& pass, const Matrix& x) {
  m = pass.m;
  input.set_constant(m, x);
  for (std::size_t k = 0; k < layers.size(); ++k)
    layers[k]->forward(pass, k == 0 ? input : values[k - 1], values[k], scratch);
}

double Model::Impl::head_loss(const Dataset& batch, double scale) {
  const double loss = head->forward(m, values.back(), batch, delta, scratch);
  for (int s = 0; s < delta.size(); ++s)
    if (delta.nz[static_cast<std::size_t>(s)]) delta.c[static_cast<std::size_t>(s)] *= scale;
  return scale * loss;
}

void Model::Impl::backward(Vector& out, Vector* first) {
  out.resize(n_params);
  if (first) first->resize(n_params);
  const BackwardPass pass{m, out, first};
  for (std::size_t k = layers.size(); k-- > 0;) {
    layers[k]->backward(pass, k == 0 ? input : values[k - 1], delta, k == 0 ? nullptr : &next_delta, scratch);
    std::swap(delta, next_delta);
  }
}

double Model::Impl::evaluate(const Vector& theta, const Vector* const* directions, int n_directions,
                             const Dataset& batch, double scale, Vector* out, Vector* first) {
  forward({theta, directions, n_directions}, batch.x);
  const double loss = head_loss(batch, scale);
  if (out) backward(*out, first);
  return loss;
}

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

Index Model::n_params() const { return impl_->n_params; }

std::string Model::description() const {
  std::string text = std::to_string(impl_->n_inputs) + " -> ";
  for (std::size_t k = 0; k < impl_->layers.size(); ++k) text += (k == 0 ? "" : ", ") + impl_->layers[k]->text();
  return text + " -> " + impl_->head->text();
}

std::vector<ParameterBlock> Model::blocks() const {
  std::vector<ParameterBlock> out;
  for (const auto& layer : impl_->layers)
    for (ParameterBlock& b : layer->blocks()) out.push_back(std::move(b));
  return out;
}

std::vector<ParameterBlock> Model::scale_invariant_blocks() const {
  const auto& layers = impl_->layers;
  std::vector<ParameterBlock> out;
  for (std::size_t k = 0; k < layers.size(); ++k) {
    for (ParameterBlock& b : layers[k]->scale_invariant_blocks()) out.push_back(std::move(b));
    if (k + 1 < layers.size() && layers[k + 1]->invariant_to_input_scale())
      if (auto b = layers[k]->linear_block()) out.push_back(std::move(*b));
  }
  return out;
}

std::vector<ParameterSum> Model::translation_components() const {
  if (!impl_->head->invariant_to_output_shift()) return {};
  return impl_->layers.back()->output_shift_components();
}

void Model::use_reference_path(bool reference) { impl_->use_reference_path(reference); }

Vector Model::initial_parameters(std::uint64_t seed) const {
  Rng rng(seed, rng_stream::init);
  Vector theta(impl_->n_params);
  for (const auto& layer : impl_->layers) layer->initialize(rng, theta);
  return theta;
}

Matrix Model::outputs(const Vector& theta, const Matrix& x) const {
  impl_->forward({theta, nullptr, 0}, x);
  return impl_->values.back().c[0];
}

double Model::loss_value(const Vector& theta, const Dataset& batch, double scale) const {
  if (impl_->fast) return impl_->fast->loss(theta, batch, scale);
  return impl_->evaluate(theta, nullptr, 0, batch, scale, nullptr);
}

double Model::loss_and_gradient(const Vector& theta, const Dataset& batch, double scale, Vector& grad) const {
  if (impl_->fast) return impl_->fast->loss_and_gradient(theta, batch, scale, grad);
  return impl_->evaluate(theta, nullptr, 0, batch, scale, &grad);
}

void Model::hessian_vector(const Vector& theta, const Vector& v, const Dataset& batch, double scale, Vector& hv,
                           bool same_point) const {
  if (impl_->fast) return impl_->fast->hessian_vector(theta, v, batch, scale, hv, same_point);
  const Vector* directions[] = {&v};
  impl_->evaluate(theta, directions, 1, batch, scale, &hv);
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

Model make_model(const ModelConfig& config) {
  const std::vector<LayerSpec> architecture = mlp_architecture(config);
  Model model(std::make_unique<Model::Impl>(config.layers.front(), architecture, to_string(config.loss)));
  // A normalized MLP always ran on the jet path, also without a hidden layer to normalize (widths d,k):
  // its results stay those bits.
  if (config.normalize != Normalization::none) model.use_reference_path(true);
  return model;
}

}  // namespace eomlab
