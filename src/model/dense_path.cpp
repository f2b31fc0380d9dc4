#include "model/dense_path.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/error.hpp"
#include "model/activation.hpp"
#include "model/gemm.hpp"

namespace eomlab {
namespace {

// A row-major W (out x in) of the flat layout read in place as the column-major matrix Wᵀ (in x out).
Eigen::Map<const Matrix> transposed_weights(const Vector& flat, const DenseLayer& l) {
  return {flat.data() + l.w_offset, l.in, l.out};
}
Eigen::Map<Matrix> transposed_weights(Vector& flat, const DenseLayer& l) { return {flat.data() + l.w_offset, l.in, l.out}; }
Eigen::Map<const Vector> bias(const Vector& flat, const DenseLayer& l) { return {flat.data() + l.b_offset, l.out}; }
Eigen::Map<Vector> bias(Vector& flat, const DenseLayer& l) { return {flat.data() + l.b_offset, l.out}; }

// out = Σ_j m(:, j), column by column (contiguous; twice as fast as Eigen's rowwise().sum()).
void sum_columns(const Eigen::Ref<const Matrix>& m, Eigen::Map<Vector> out) {
  out.setZero();
  for (Index j = 0; j < m.cols(); ++j) out += m.col(j);
}

// Block k of a batch cut at `ends` (DensePath::whole_ends_): its first column and its number of columns.
Index block_begin(const std::vector<Index>& ends, std::size_t k) { return k == 0 ? 0 : ends[k - 1]; }
Index block_size(const std::vector<Index>& ends, std::size_t k) { return ends[k] - block_begin(ends, k); }

// What the kept primal passes may hold in all (e.g. the passes of minibatch SGD's batches evaluated one
// by one at the same θ: together one pass over the shard).
constexpr double primal_budget_bytes = 1024.0 * 1024.0 * 1024.0;

}  // namespace

void DensePathPlan::add_dense(const DenseLayer& layer) {
  if (after_dense) reject();
  layers.push_back(layer);
  after_dense = true;
}

void DensePathPlan::add_activation(Activation a) {
  if (!after_dense || (activation && *activation != a)) reject();
  activation = a;
  after_dense = false;
}

DensePath::DensePath(const DensePathPlan& plan)
    : layers_(plan.layers),
      activation_kind_(plan.activation.value_or(Activation::tanh)),  // unused without hidden layers
      loss_(plan.loss.value()) {
  for (auto* v : {&z_dot_, &a_dot_, &e_dot_, &delta_dot_}) v->resize(layers_.size());
  add_slot();
}

double DensePath::Primal::bytes() const {
  double n = static_cast<double>(probabilities.size());
  for (const auto& a : activation) n += static_cast<double>(a[0].size() + a[1].size() + a[2].size());
  for (const auto* v : {&z, &e, &delta})
    for (const Matrix& m : *v) n += static_cast<double>(m.size());
  return 8.0 * n;
}

// The slot of `batch`'s pass at this θ, if one was given out (batch ids index a table).
const std::size_t* DensePath::slot_of(long batch) const {
  if (batch < 0 || static_cast<std::size_t>(batch) >= slot_of_batch_.size()) return nullptr;
  const auto& [point, slot] = slot_of_batch_[static_cast<std::size_t>(batch)];
  return point == point_ ? &slot : nullptr;
}

const DensePath::Primal* DensePath::kept(PassKey pass, double scale) const {
  if (!pass.named() || pass.point != point_) return nullptr;
  const std::size_t* slot = slot_of(pass.batch);
  if (!slot) return nullptr;
  const Primal& p = primals_[*slot];
  return p.pass == pass && p.scale == scale ? &p : nullptr;
}

DensePath::Primal& DensePath::slot_for(PassKey pass) {
  constexpr long max_batches = 1L << 24;
  if (!pass.named() || pass.batch < 0 || pass.batch >= max_batches) return primals_.front();
  if (pass.point != point_) {  // every kept pass is of an earlier θ: all slots are free
    point_ = pass.point;
    used_ = 0;
  }
  if (const std::size_t* slot = slot_of(pass.batch)) return primals_[*slot];
  std::size_t slot = 0;
  if (used_ < primals_.size()) {
    slot = used_++;
  } else if (static_cast<double>(primals_.size() + 1) * slot_bytes_ <= primal_budget_bytes) {
    add_slot();
    slot = used_++;
  }
  const auto b = static_cast<std::size_t>(pass.batch);
  if (b >= slot_of_batch_.size()) slot_of_batch_.resize(b + 1, {0, 0});
  slot_of_batch_[b] = {point_, slot};
  return primals_[slot];
}

void DensePath::add_slot() {
  Primal& p = primals_.emplace_back();
  p.activation.resize(layers_.size());
  for (auto* v : {&p.z, &p.e, &p.delta}) v->resize(layers_.size());
}

double DensePath::forward_and_head(Primal& p, const Vector& theta, const Dataset& batch, double scale) {
  const std::size_t n = layers_.size();
  for (std::size_t i = 0; i < n; ++i) {
    const DenseLayer& l = layers_[i];
    const Matrix& input = i == 0 ? batch.x : p.activation[i - 1][0];
    Matrix& z = p.z[i];
    z.resize(l.out, input.cols());
    z.colwise() = bias(theta, l);
    gemm(1.0, transposed_weights(theta, l), Op::transpose, input, Op::none, 1.0, z);
    if (i + 1 == n) break;
    apply_activation(activation_kind_, z, 2, p.activation[i].data());
  }
  const Matrix& z = p.z.back();
  Matrix& delta = p.delta.back();
  double loss = 0.0;
  if (loss_ == LossKind::cross_entropy) {
    // Softmax with the column maximum subtracted; ℓ = log Σ exp(z - max) + max - z_label.
    column_max_ = z.colwise().maxCoeff();
    p.probabilities.resize(z.rows(), z.cols());
    p.probabilities.array() = (z.rowwise() - column_max_).array().exp();
    column_sum_ = p.probabilities.colwise().sum();
    for (Index j = 0; j < z.cols(); ++j)
      loss += std::log(column_sum_[j]) + column_max_[j] -
              z(static_cast<Index>(batch.labels[static_cast<std::size_t>(j)]), j);
    p.probabilities.array().rowwise() /= column_sum_.array();
    delta = scale * p.probabilities;
    for (Index j = 0; j < z.cols(); ++j) delta(static_cast<Index>(batch.labels[static_cast<std::size_t>(j)]), j) -= scale;
  } else {
    delta = z - batch.targets;
    loss = 0.5 * delta.squaredNorm();
    delta *= scale;
  }
  return scale * loss;
}

void DensePath::backward(Primal& p, const Vector& theta, const Matrix& x, const std::vector<Index>& ends,
                         Vector* const* grads, bool first_layer_weights) {
  for (std::size_t i = layers_.size(); i-- > 0;) {
    const DenseLayer& l = layers_[i];
    const Matrix& input = i == 0 ? x : p.activation[i - 1][0];
    for (std::size_t k = 0; grads && k < ends.size(); ++k) {
      const Index begin = block_begin(ends, k), size = block_size(ends, k);
      // (δ aᵀ)ᵀ in place; a block without samples here has a zero gradient (a BLAS product over none).
      if (i > 0 || first_layer_weights)
        gemm(1.0, input.middleCols(begin, size), Op::none, p.delta[i].middleCols(begin, size), Op::transpose, 0.0,
             transposed_weights(*grads[k], l));
      sum_columns(p.delta[i].middleCols(begin, size), bias(*grads[k], l));
    }
    if (i == 0) break;
    p.e[i - 1].resize(l.in, x.cols());
    gemm(1.0, transposed_weights(theta, l), Op::none, p.delta[i], Op::none, 0.0, p.e[i - 1]);
    p.delta[i - 1].array() = p.activation[i - 1][1].array() * p.e[i - 1].array();
  }
}

const std::vector<Index>& DensePath::whole(const Dataset& batch) {
  whole_ends_.assign(1, batch.x.cols());
  return whole_ends_;
}

double DensePath::loss(const Vector& theta, const Dataset& batch, double scale) {
  Primal& p = slot_for({});
  p.pass = {};
  return forward_and_head(p, theta, batch, scale);
}

const DensePath::Primal& DensePath::primal(const Vector& theta, const Dataset& batch, double scale,
                                           const std::vector<Index>& ends, Vector* const* grads, PassKey pass,
                                           double* loss, bool first_layer_weights) {
  Primal& p = slot_for(pass);
  p.pass = {};  // names nothing until complete
  const double l = forward_and_head(p, theta, batch, scale);
  for (std::size_t k = 0; grads && k < ends.size(); ++k) grads[k]->resize(theta.size());
  backward(p, theta, batch.x, ends, grads, first_layer_weights);
  p.pass = pass;
  p.scale = scale;
  slot_bytes_ = std::max(slot_bytes_, p.bytes());
  if (loss) *loss = l;
  return p;
}

double DensePath::loss_and_gradient(const Vector& theta, const Dataset& batch, double scale, Vector& grad,
                                    PassKey pass) {
  double loss = 0;
  one_gradient_.assign(1, &grad);
  primal(theta, batch, scale, whole(batch), one_gradient_.data(), pass, &loss);
  return loss;
}

namespace {

// Whether `ends` cut a batch of n samples into consecutive blocks (possibly empty), one per `count`.
bool valid_blocks(const std::vector<Index>& ends, std::size_t count, Index n) {
  return !ends.empty() && ends.size() == count && ends.back() == n && ends.front() >= 0 &&
         std::is_sorted(ends.begin(), ends.end());
}

}  // namespace

void DensePath::block_gradients(const Vector& theta, const Dataset& batch, const std::vector<Index>& ends, double scale,
                                const std::vector<Vector*>& grads, PassKey pass) {
  if (!valid_blocks(ends, grads.size(), batch.x.cols()))
    throw Error("DensePath::block_gradients: expected one gradient per block and blocks ending at the batch's end");
  primal(theta, batch, scale, ends, grads.data(), pass);
}

void DensePath::hessian_vector(const Vector& theta, const Vector& v, const Dataset& batch, double scale, Vector& hv,
                               PassKey pass) {
  one_direction_.assign(1, &v);
  hessian_vector_sum(theta, one_direction_, batch, whole(batch), scale, hv, pass);
}

void DensePath::hessian_vector_sum(const Vector& theta, const std::vector<const Vector*>& v, const Dataset& batch,
                                   const std::vector<Index>& ends, double scale, Vector& hv, PassKey pass) {
  if (!valid_blocks(ends, v.size(), batch.x.cols()))
    throw Error("DensePath::hessian_vector_sum: expected one direction per block and blocks ending at the batch's end");
  const Primal* kept_pass = kept(pass, scale);
  const Primal& p = kept_pass ? *kept_pass : primal(theta, batch, scale, ends, nullptr, pass);
  tangent_sum(p, theta, v, batch, ends, scale, hv, nullptr);
}

void DensePath::prefix_direction_sum(const Vector& theta, const Dataset& batch, const std::vector<Index>& ends,
                                     double scale, const FirstLayerGram& gram, Vector& gradient_sum,
                                     Vector* weighted_sum, Vector& out, PassKey pass) {
  const std::size_t m = ends.size();
  if (!valid_blocks(ends, m, batch.x.cols()) || gram.mask.rows() != batch.x.cols() ||
      gram.mask.cols() != batch.x.cols() || gram.c.size() != m)
    throw Error("DensePath::prefix_direction_sum: expected blocks ending at the batch's end, an N x N Gram matrix "
                "and one coefficient per block");
  // Block gradients but the first layer's weights (their products go through the Gram matrix).
  blocks_.resize(m);
  block_outputs_.resize(m);
  for (std::size_t k = 0; k < m; ++k) block_outputs_[k] = &blocks_[k];
  const Primal& p = primal(theta, batch, scale, ends, block_outputs_.data(), pass, nullptr, false);
  const DenseLayer& first = layers_.front();
  // The first layer's weight sums over all samples: Σ_i g_i, and Σ_i (m/2 − 1 − i) g_i when asked.
  const Index w_begin = first.w_offset, w_end = first.w_offset + first.in * first.out, n = theta.size();
  gradient_sum.resize(n);
  gemm(1.0, batch.x, Op::none, p.delta[0], Op::transpose, 0.0, transposed_weights(gradient_sum, first));
  const double half = static_cast<double>(m) / 2;
  if (weighted_sum) {
    weighted_delta_ = p.delta[0];
    for (std::size_t k = 0; k < m; ++k)
      weighted_delta_.middleCols(block_begin(ends, k), block_size(ends, k)) *= half - 1 - static_cast<double>(k);
    weighted_sum->resize(n);
    gemm(1.0, batch.x, Op::none, weighted_delta_, Op::transpose, 0.0, transposed_weights(*weighted_sum, first));
  }
  // The other entries, a cache-sized chunk of all m blocks at a time: the sums, then block k's direction
  // w_k = Σ_{i<k} g_i − ½ Σ_i g_i + c_k θ in its gradient's place (the running sum r beside).
  constexpr Index chunk = 512;
  running_.resize(chunk);
  for (const auto& [from, to] : {std::pair{Index(0), w_begin}, std::pair{w_end, n}})
    for (Index start = from; start < to; start += chunk) {
      const Index len = std::min(chunk, to - start);
      auto total = gradient_sum.segment(start, len);
      auto r = running_.head(len);
      total.setZero();
      for (std::size_t k = 0; k < m; ++k) total += blocks_[k].segment(start, len);
      if (weighted_sum) {
        auto weighted = weighted_sum->segment(start, len);
        weighted.setZero();
        for (std::size_t k = 0; k < m; ++k) weighted += (half - 1 - static_cast<double>(k)) * blocks_[k].segment(start, len);
      }
      r.setZero();
      for (std::size_t k = 0; k < m; ++k) {
        auto g = blocks_[k].segment(start, len);
        g.swap(r);  // r = Σ_{i<=k} g_i after the next line; g = Σ_{i<k} g_i
        r += g;
        g = g - total / 2 + gram.c[k] * theta.segment(start, len);
      }
    }
  directions_.resize(m);
  for (std::size_t k = 0; k < m; ++k) directions_[k] = &blocks_[k];
  tangent_sum(p, theta, directions_, batch, ends, scale, out, &gram);
}

void DensePath::tangent_sum(const Primal& p, const Vector& theta, const std::vector<const Vector*>& v,
                            const Dataset& batch, const std::vector<Index>& ends, double scale, Vector& hv,
                            const FirstLayerGram* gram) {
  const std::size_t n = layers_.size();
  // Tangent forward: ż = V a + W ȧ + c, ȧ = σ'(z) ⊙ ż (V, c the block's direction). With `gram`, the first
  // layer's V_k x_k come from it: V_k = Σ_{i<k} δ_i x_iᵀ − ½ Σ_i δ_i x_iᵀ + c_k W, so V_k x_k is
  // (Δ mask)_k + c_k (z_k − b).
  for (std::size_t i = 0; i < n; ++i) {
    const DenseLayer& l = layers_[i];
    Matrix& z_dot = z_dot_[i];
    z_dot.resize(l.out, batch.x.cols());
    const Matrix& input = i == 0 ? batch.x : p.activation[i - 1][0];
    for (std::size_t k = 0; k < ends.size(); ++k) {
      const Index begin = block_begin(ends, k), size = block_size(ends, k);
      if (i == 0 && gram) {
        const double c = gram->c[k];
        z_dot.middleCols(begin, size) = c * p.z[0].middleCols(begin, size);
        z_dot.middleCols(begin, size).colwise() += bias(*v[k], l) - c * bias(theta, l);
        continue;
      }
      z_dot.middleCols(begin, size).colwise() = bias(*v[k], l);
      gemm(1.0, transposed_weights(*v[k], l), Op::transpose, input.middleCols(begin, size), Op::none, 1.0,
           z_dot.middleCols(begin, size));
    }
    if (i == 0 && gram) gemm(1.0, p.delta[0], Op::none, gram->mask, Op::none, 1.0, z_dot);
    if (i > 0) gemm(1.0, transposed_weights(theta, l), Op::transpose, a_dot_[i - 1], Op::none, 1.0, z_dot);
    if (i + 1 < n) a_dot_[i].array() = p.activation[i][1].array() * z_dot.array();
  }
  // Tangent of the head's δ: scale·ṗ with ṗ = p ⊙ (ż - Σ_c p ż) for softmax, scale·ż for mse.
  const Matrix& z_dot = z_dot_.back();
  Matrix& head = delta_dot_.back();
  if (loss_ == LossKind::cross_entropy) {
    column_sum_ = (p.probabilities.array() * z_dot.array()).colwise().sum();
    head.array() = scale * p.probabilities.array() * (z_dot.rowwise() - column_sum_).array();
  } else {
    head = scale * z_dot;
  }
  // Tangent backward: Ḡ = ȧ δᵀ + a δ̇ᵀ summed over every block's samples, ė = Wᵀ δ̇ + Vᵀ δ,
  // δ̇ = σ''(z) ż ⊙ e + σ'(z) ⊙ ė.
  hv.resize(theta.size());
  for (std::size_t i = n; i-- > 0;) {
    const DenseLayer& l = layers_[i];
    const auto h = transposed_weights(hv, l);
    gemm(1.0, i == 0 ? batch.x : p.activation[i - 1][0], Op::none, delta_dot_[i], Op::transpose, 0.0, h);
    if (i > 0) gemm(1.0, a_dot_[i - 1], Op::none, p.delta[i], Op::transpose, 1.0, h);
    sum_columns(delta_dot_[i], bias(hv, l));
    if (i == 0) break;
    Matrix& e_dot = e_dot_[i - 1];
    e_dot.resize(l.in, batch.x.cols());
    gemm(1.0, transposed_weights(theta, l), Op::none, delta_dot_[i], Op::none, 0.0, e_dot);
    for (std::size_t k = 0; k < ends.size(); ++k) {
      const Index begin = block_begin(ends, k), size = block_size(ends, k);
      gemm(1.0, transposed_weights(*v[k], l), Op::none, p.delta[i].middleCols(begin, size), Op::none, 1.0,
           e_dot.middleCols(begin, size));
    }
    const auto& [a, d1, d2] = p.activation[i - 1];
    delta_dot_[i - 1].array() = d2.array() * z_dot_[i - 1].array() * p.e[i - 1].array() + d1.array() * e_dot.array();
  }
}

}  // namespace eomlab
