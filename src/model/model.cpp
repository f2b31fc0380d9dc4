#include "model/model.hpp"

#include "model/mlp.hpp"

namespace eomlab {

struct Model::Impl {
  Mlp mlp;
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

Index Model::n_params() const { return impl_->mlp.n_params(); }

std::string Model::description() const {
  const Mlp& m = impl_->mlp;
  std::string text = std::to_string(m.n_inputs()) + " -> ";
  for (std::size_t i = 0; i < m.layers().size(); ++i) {
    const bool hidden = i + 1 < m.layers().size();
    text += "dense(" + std::to_string(m.layers()[i].out) +
            (hidden && m.normalization() == Normalization::weight ? ", weightnorm=on)" : ")");
    if (hidden && m.normalization() == Normalization::layer) text += ", layernorm";
    if (hidden) text += std::string(", ") + to_string(m.activation()) + ", ";
  }
  return text + " -> " + to_string(m.loss());
}

std::vector<ParameterBlock> Model::blocks() const { return impl_->mlp.blocks(); }
std::vector<ParameterBlock> Model::scale_invariant_blocks() const { return impl_->mlp.scale_invariant_blocks(); }
std::vector<ParameterSum> Model::translation_components() const { return impl_->mlp.translation_components(); }
void Model::use_reference_path(bool reference) { impl_->mlp.use_reference_path(reference); }
Vector Model::initial_parameters(std::uint64_t seed) const { return impl_->mlp.initial_parameters(seed); }
Matrix Model::outputs(const Vector& theta, const Matrix& x) const { return impl_->mlp.outputs(theta, x); }

double Model::loss_value(const Vector& theta, const Dataset& batch, double scale) const {
  return impl_->mlp.loss_value(theta, batch, scale);
}

double Model::loss_and_gradient(const Vector& theta, const Dataset& batch, double scale, Vector& grad) const {
  return impl_->mlp.loss_and_gradient(theta, batch, scale, grad);
}

void Model::hessian_vector(const Vector& theta, const Vector& v, const Dataset& batch, double scale, Vector& hv,
                           bool same_point) const {
  impl_->mlp.hessian_vector(theta, v, batch, scale, hv, same_point);
}

void Model::third_order(const Vector& theta, const Vector& u, const Vector& v, const Dataset& batch, double scale,
                        Vector& out) const {
  impl_->mlp.third_order(theta, u, v, batch, scale, out);
}

void Model::hessian_and_third_order(const Vector& theta, const Vector& u, const Dataset& batch, double scale,
                                    Vector& hu, Vector& tuu) const {
  impl_->mlp.hessian_and_third_order(theta, u, batch, scale, hu, tuu);
}

Model make_model(const ModelConfig& config) {
  return Model(std::make_unique<Model::Impl>(
      Model::Impl{Mlp(config.layers, config.activation, config.loss, config.normalize)}));
}

}  // namespace eomlab
