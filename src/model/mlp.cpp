#include "model/mlp.hpp"

#include <cmath>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "model/activation.hpp"
#include "model/blas.hpp"
#include "model/dense_path.hpp"
#include "model/jet.hpp"

namespace eomlab {
namespace {

using ConstWeights = Eigen::Map<const RowMajorMatrix>;

// d[k] = d^k/dx^k x^p for k = 0..order, elementwise.
void power_derivatives(const Eigen::Ref<const Matrix>& x, double p, int order, Buffer* d) {
  double coef = 1.0;
  for (int k = 0; k <= order; ++k) {
    d[k] = coef * x.array().pow(p - k).matrix();
    coef *= p - k;
  }
}

}  // namespace

struct Mlp::Workspace {
  int m = 0;
  Jet input;
  std::vector<Jet> w, b;          // parameters of each layer with their directional parts
  std::vector<Jet> row_sq, row_scale, w_eff;  // weight normalization: Σ_j w², (Σ w²)^{-1/2}, scaled rows
  std::vector<Jet> z;             // pre-activations W a + b
  std::vector<Jet> centred, col_var, inv_std, zhat;  // layer normalization
  std::vector<Jet> a;             // activations of hidden layers
  std::vector<Jet> slope;         // σ'(ẑ) of hidden layers
  Jet delta, next_delta, grad_w, grad_b, t0, t1, t2, t3;
  Buffer derivs[5], derivs2[5];
  Eigen::RowVectorXd column_max;
  double loss = 0;
  std::unique_ptr<DensePath> fast;  // null where the fast path does not apply, or when told to use the reference
};

Mlp::Mlp(std::vector<Index> widths, Activation activation, LossKind loss, Normalization normalization)
    : widths_(std::move(widths)),
      activation_(activation),
      loss_(loss),
      normalization_(normalization),
      ws_(std::make_unique<Workspace>()) {
  use_one_blas_thread();
  if (widths_.size() < 2) throw Error("Mlp: expected at least two layer widths");
  Index offset = 0;
  for (std::size_t i = 0; i + 1 < widths_.size(); ++i) {
    DenseLayer l;
    l.in = widths_[i];
    l.out = widths_[i + 1];
    l.w_offset = offset;
    l.b_offset = offset + l.in * l.out;
    offset = l.b_offset + l.out;
    layers_.push_back(l);
  }
  n_params_ = offset;
  const std::size_t n = layers_.size();
  for (auto* v : {&ws_->w, &ws_->b, &ws_->row_sq, &ws_->row_scale, &ws_->w_eff, &ws_->z, &ws_->centred,
                  &ws_->col_var, &ws_->inv_std, &ws_->zhat, &ws_->a, &ws_->slope})
    v->resize(n);
  use_reference_path(false);
}

void Mlp::use_reference_path(bool reference) {
  ws_->fast.reset();
  if (!reference && normalization_ == Normalization::none)
    ws_->fast = std::make_unique<DensePath>(layers_, activation_, loss_);
}

Mlp::~Mlp() = default;
Mlp::Mlp(Mlp&&) noexcept = default;
Mlp& Mlp::operator=(Mlp&&) noexcept = default;

std::vector<ParameterBlock> Mlp::blocks() const {
  std::vector<ParameterBlock> out;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const DenseLayer& l = layers_[i];
    out.push_back({"layer" + std::to_string(i) + ".W", l.w_offset, l.in * l.out, l.out, l.in});
    out.push_back({"layer" + std::to_string(i) + ".b", l.b_offset, l.out, l.out, 1});
  }
  return out;
}

std::vector<ParameterBlock> Mlp::scale_invariant_blocks() const {
  std::vector<ParameterBlock> out;
  for (std::size_t i = 0; i + 1 < layers_.size(); ++i) {
    const DenseLayer& l = layers_[i];
    const std::string layer = "layer" + std::to_string(i);
    if (normalization_ == Normalization::layer) {
      out.push_back({layer + ".Wb", l.w_offset, l.in * l.out + l.out, l.in * l.out + l.out, 1});
    } else if (normalization_ == Normalization::weight) {
      for (Index r = 0; r < l.out; ++r)
        out.push_back({layer + ".W[" + std::to_string(r) + "]", l.w_offset + r * l.in, l.in, 1, l.in});
    }
  }
  return out;
}

std::vector<ParameterSum> Mlp::translation_components() const {
  std::vector<ParameterSum> out;
  if (loss_ != LossKind::cross_entropy) return out;
  const DenseLayer& l = layers_.back();
  const std::string layer = "layer" + std::to_string(layers_.size() - 1);
  for (Index j = 0; j < l.in; ++j)
    out.push_back({layer + ".W[:," + std::to_string(j) + "]", l.w_offset + j, l.in, l.out});
  out.push_back({layer + ".b", l.b_offset, 1, l.out});
  return out;
}

Vector Mlp::initial_parameters(std::uint64_t seed) const {
  Rng rng(seed, rng_stream::init);
  Vector theta(n_params_);
  for (const DenseLayer& l : layers_) {
    const double w_std = 1.0 / std::sqrt(static_cast<double>(l.in));
    for (Index k = 0; k < l.in * l.out; ++k) theta[l.w_offset + k] = w_std * rng.normal();
    for (Index k = 0; k < l.out; ++k) theta[l.b_offset + k] = 0.1 * rng.normal();
  }
  return theta;
}

void Mlp::forward(const Vector& theta, const Vector* const* directions, int m, const Matrix& x) const {
  Workspace& w = *ws_;
  w.m = m;
  w.input.set_constant(m, x);
  const std::size_t n = layers_.size();
  const int order = m + 1;  // σ' of the activations is needed as a jet of m directions
  for (std::size_t i = 0; i < n; ++i) {
    const DenseLayer& l = layers_[i];
    Jet& W = w.w[i];
    Jet& B = w.b[i];
    W.reset(m);
    B.reset(m);
    W.set(0, l.out, l.in) = ConstWeights(theta.data() + l.w_offset, l.out, l.in);
    B.set(0, l.out, 1) = theta.segment(l.b_offset, l.out);
    for (int d = 0; d < m; ++d) {
      W.set(1 << d, l.out, l.in) = ConstWeights(directions[d]->data() + l.w_offset, l.out, l.in);
      B.set(1 << d, l.out, 1) = directions[d]->segment(l.b_offset, l.out);
    }
    const Jet* weights = &W;
    if (normalization_ == Normalization::weight && is_normalized(i)) {
      jet_hadamard(W, W, w.t0);
      jet_row_sums(w.t0, w.row_sq[i]);
      power_derivatives(w.row_sq[i].c[0], -0.5, m, w.derivs);
      jet_apply(w.row_sq[i], w.derivs, w.row_scale[i]);
      jet_scale_rows(W, w.row_scale[i], w.w_eff[i]);
      weights = &w.w_eff[i];
    }
    const Jet& input = i == 0 ? w.input : w.a[i - 1];
    jet_matmul(*weights, Op::none, input, Op::none, w.z[i]);
    jet_add_to_columns(w.z[i], B);
    if (i + 1 == n) break;

    const Jet* pre = &w.z[i];
    if (normalization_ == Normalization::layer) {
      const double inv_rows = 1.0 / static_cast<double>(l.out);
      jet_column_sums(w.z[i], w.t0);
      w.centred[i] = w.z[i];
      w.t1.reset(m);
      jet_axpy(inv_rows, w.t0, w.t1);  // mean over neurons
      jet_subtract_row(w.centred[i], w.t1);
      jet_hadamard(w.centred[i], w.centred[i], w.t0);
      jet_column_sums(w.t0, w.t1);
      w.col_var[i].reset(m);
      jet_axpy(inv_rows, w.t1, w.col_var[i]);
      power_derivatives(w.col_var[i].c[0], -0.5, m, w.derivs);
      jet_apply(w.col_var[i], w.derivs, w.inv_std[i]);
      jet_scale_columns(w.centred[i], w.inv_std[i], w.zhat[i]);
      pre = &w.zhat[i];
    }
    apply_activation(activation_, pre->c[0], order, w.derivs);
    jet_apply(*pre, w.derivs, w.a[i]);
    jet_apply(*pre, w.derivs + 1, w.slope[i]);
  }
}

double Mlp::head(const Dataset& batch, double scale) const {
  Workspace& w = *ws_;
  const Jet& z = w.z.back();
  const Buffer& z0 = z.c[0];
  Jet& delta = w.delta;
  double loss = 0.0;
  if (loss_ == LossKind::cross_entropy) {
    Eigen::RowVectorXd& mx = w.column_max;
    mx = z0.colwise().maxCoeff();
    w.derivs[0] = (z0.rowwise() - mx).array().exp().matrix();
    for (int k = 1; k <= w.m; ++k) w.derivs[k] = w.derivs[0];
    jet_apply(z, w.derivs, w.t0);  // e = exp(z - max): every derivative of exp is exp
    jet_column_sums(w.t0, w.t1);   // s
    const Buffer& sums = w.t1.c[0];
    for (Index i = 0; i < z0.cols(); ++i)
      loss += std::log(sums(0, i)) + mx[i] - z0(static_cast<Index>(batch.labels[static_cast<std::size_t>(i)]), i);
    power_derivatives(w.t1.c[0], -1.0, w.m, w.derivs2);
    jet_apply(w.t1, w.derivs2, w.t2);  // 1/s
    jet_scale_columns(w.t0, w.t2, delta);  // softmax probabilities
    for (Index i = 0; i < z0.cols(); ++i) delta.c[0](static_cast<Index>(batch.labels[static_cast<std::size_t>(i)]), i) -= 1.0;
  } else {
    delta = z;
    delta.c[0] -= batch.targets;
    loss = 0.5 * delta.c[0].squaredNorm();
  }
  for (int s = 0; s < delta.size(); ++s)
    if (delta.nz[static_cast<std::size_t>(s)]) delta.c[static_cast<std::size_t>(s)] *= scale;
  return scale * loss;
}

void Mlp::backward(Vector& out, Vector* first) const {
  Workspace& w = *ws_;
  const int m = w.m;
  const int top = (1 << m) - 1;
  out.resize(n_params_);
  if (first) first->resize(n_params_);
  const unsigned wanted = (1u << top) | (first ? 1u << 1 : 0u);
  auto write_component = [&](const Jet& j, int s, Vector& target_vector, Index offset, Index rows, Index cols) {
    Eigen::Map<RowMajorMatrix> target(target_vector.data() + offset, rows, cols);
    if (j.nz[static_cast<std::size_t>(s)])
      target = j.c[static_cast<std::size_t>(s)];
    else
      target.setZero();
  };
  auto write_top = [&](const Jet& j, Index offset, Index rows, Index cols) {
    write_component(j, top, out, offset, rows, cols);
    if (first) write_component(j, 1, *first, offset, rows, cols);
  };
  for (std::size_t i = layers_.size(); i-- > 0;) {
    const DenseLayer& l = layers_[i];
    const Jet& input = i == 0 ? w.input : w.a[i - 1];
    const bool weight_normalized = normalization_ == Normalization::weight && is_normalized(i);
    // ∂/∂W_eff = δ aᵀ; only its top component is needed unless it feeds the weight normalization.
    jet_matmul(w.delta, Op::none, input, Op::transpose, w.grad_w, weight_normalized ? all_components : wanted);
    jet_row_sums(w.delta, w.grad_b);
    write_top(w.grad_b, l.b_offset, l.out, 1);
    if (weight_normalized) {
      // W_eff = r ⊙ W with r = n^{-1/2}, n = Σ_j W²: ∂/∂W = r ⊙ Ḡ + 2 W ⊙ (Σ_j Ḡ ⊙ W) ⊙ dr/dn.
      const Jet& W = w.w[i];
      jet_hadamard(w.grad_w, W, w.t0);
      jet_row_sums(w.t0, w.t1);
      power_derivatives(w.row_sq[i].c[0], -0.5, m + 1, w.derivs);
      jet_apply(w.row_sq[i], w.derivs + 1, w.t2);  // dr/dn as a jet
      jet_hadamard(w.t1, w.t2, w.t3);
      jet_scale_rows(W, w.t3, w.t0);
      jet_scale_rows(w.grad_w, w.row_scale[i], w.t1);
      jet_axpy(2.0, w.t0, w.t1);
      write_top(w.t1, l.w_offset, l.out, l.in);
    } else {
      write_top(w.grad_w, l.w_offset, l.out, l.in);
    }
    if (i == 0) break;

    const Jet& weights = weight_normalized ? w.w_eff[i] : w.w[i];
    jet_matmul(weights, Op::transpose, w.delta, Op::none, w.t0);  // Wᵀδ
    jet_hadamard(w.slope[i - 1], w.t0, w.next_delta);              // ∂/∂ẑ
    if (normalization_ == Normalization::layer) {
      // ẑ = c ⊙ s, c = z - mean(z), s = var^{-1/2}, var = mean(c²) over the layer's neurons.
      const double inv_rows = 1.0 / static_cast<double>(layers_[i - 1].out);
      const Jet& c = w.centred[i - 1];
      jet_scale_columns(w.next_delta, w.inv_std[i - 1], w.t1);  // c̄ = ẑ̄ ⊙ s
      jet_hadamard(w.next_delta, c, w.t0);
      jet_column_sums(w.t0, w.t2);  // s̄
      power_derivatives(w.col_var[i - 1].c[0], -0.5, m + 1, w.derivs);
      jet_apply(w.col_var[i - 1], w.derivs + 1, w.t3);  // ds/dvar
      jet_hadamard(w.t2, w.t3, w.t0);                    // var̄
      jet_scale_columns(c, w.t0, w.t2);
      jet_axpy(2.0 * inv_rows, w.t2, w.t1);              // c̄ += (2/n) c var̄
      jet_column_sums(w.t1, w.t0);
      w.t2.reset(m);
      jet_axpy(inv_rows, w.t0, w.t2);
      jet_subtract_row(w.t1, w.t2);                      // z̄ = c̄ - mean(c̄)
      std::swap(w.delta, w.t1);
    } else {
      std::swap(w.delta, w.next_delta);
    }
  }
}

double Mlp::evaluate(const Vector& theta, const Vector* const* directions, int m, const Dataset& batch,
                     double scale, Vector* out, Vector* first) const {
  forward(theta, directions, m, batch.x);
  const double loss = head(batch, scale);
  if (out) backward(*out, first);
  return loss;
}

void Mlp::hessian_and_third_order(const Vector& theta, const Vector& u, const Dataset& batch, double scale, Vector& hu,
                                  Vector& tuu) const {
  const Vector* dirs[] = {&u, &u};
  evaluate(theta, dirs, 2, batch, scale, &tuu, &hu);
}

Matrix Mlp::outputs(const Vector& theta, const Matrix& x) const {
  forward(theta, nullptr, 0, x);
  return ws_->z.back().c[0];
}

double Mlp::loss_value(const Vector& theta, const Dataset& batch, double scale) const {
  if (ws_->fast) return ws_->fast->loss(theta, batch, scale);
  return evaluate(theta, nullptr, 0, batch, scale, nullptr);
}

double Mlp::loss_and_gradient(const Vector& theta, const Dataset& batch, double scale, Vector& grad) const {
  if (ws_->fast) return ws_->fast->loss_and_gradient(theta, batch, scale, grad);
  return evaluate(theta, nullptr, 0, batch, scale, &grad);
}

void Mlp::hessian_vector(const Vector& theta, const Vector& v, const Dataset& batch, double scale, Vector& hv,
                         bool same_point) const {
  if (ws_->fast) return ws_->fast->hessian_vector(theta, v, batch, scale, hv, same_point);
  const Vector* dirs[] = {&v};
  evaluate(theta, dirs, 1, batch, scale, &hv);
}

void Mlp::third_order(const Vector& theta, const Vector& u, const Vector& v, const Dataset& batch, double scale,
                      Vector& out) const {
  const Vector* dirs[] = {&u, &v};
  evaluate(theta, dirs, 2, batch, scale, &out);
}

}  // namespace eomlab
