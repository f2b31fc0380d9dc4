#include "model/jet.hpp"

#include <cmath>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/error.hpp"

namespace eomlab {
namespace {

// Set partitions of every mask of up to max_jet_directions bits, each partition a list of blocks.
using Partition = std::vector<int>;
const std::vector<std::vector<Partition>>& partitions() {
  static const std::vector<std::vector<Partition>> table = [] {
    std::vector<std::vector<Partition>> t(1 << max_jet_directions);
    t[0] = {{}};
    for (int s = 1; s < (1 << max_jet_directions); ++s) {
      const int low = s & -s, rest = s ^ low;
      // The block containing the lowest element is low ∪ sub for every sub ⊆ rest.
      for (int sub = rest;; sub = (sub - 1) & rest) {
        const int block = low | sub;
        for (Partition p : t[s ^ block]) {
          p.push_back(block);
          t[s].push_back(p);
        }
        if (sub == 0) break;
      }
    }
    return t;
  }();
  return table;
}

}  // namespace

void Jet::reset(int directions) {
  if (directions < 0 || directions > max_jet_directions) throw Error("Jet: too many directions");
  m = directions;
  nz.fill(false);
}

void Jet::set_constant(int directions, const Eigen::Ref<const Matrix>& value) {
  reset(directions);
  c[0] = value;
  nz[0] = true;
}

Buffer& Jet::set(int s, Index r, Index cols) {
  nz[static_cast<std::size_t>(s)] = true;
  Buffer& x = c[static_cast<std::size_t>(s)];
  x.resize(r, cols);
  return x;
}

namespace {

// The product rule of jets: out_S = Σ_{T ⊆ S} a_T ∘ b_{S∖T} for a bilinear ∘, skipping zero components.
// `product(o, x, y, first)` sets (first) or accumulates o with x ∘ y; `shape(x, y)` gives o's shape.
template <class Product, class Shape>
void jet_product(const Jet& a, const Jet& b, Jet& out, unsigned wanted, Product product, Shape shape) {
  const int m = std::max(a.m, b.m);
  out.reset(m);
  for (int s = 0; s < (1 << m); ++s) {
    if (!(wanted & (1u << s))) continue;
    bool first = true;
    for (int t = s;; t = (t - 1) & s) {
      const int u = s ^ t;
      if (t < a.size() && u < b.size() && a.nz[static_cast<std::size_t>(t)] && b.nz[static_cast<std::size_t>(u)]) {
        const Buffer& x = a.c[static_cast<std::size_t>(t)];
        const Buffer& y = b.c[static_cast<std::size_t>(u)];
        if (first) {
          const auto [rows, cols] = shape(x, y);
          out.set(s, rows, cols);
        }
        product(out.c[static_cast<std::size_t>(s)], x, y, first);
        first = false;
      }
      if (t == 0) break;
    }
  }
}

std::pair<Index, Index> same_shape(const Buffer& x, const Buffer&) { return {x.rows(), x.cols()}; }

// Each component s of an elementwise product of a and b in one pass over its terms (product_terms):
// form(o, xs, ys, terms) writes o, of the shape of the first term's x.
template <class Form>
void for_each_product_component(const Jet& a, const Jet& b, Jet& out, Form form) {
  const int m = std::max(a.m, b.m);
  out.reset(m);
  for (int s = 0; s < (1 << m); ++s) {
    const Buffer* xs[1 << max_jet_directions];
    const Buffer* ys[1 << max_jet_directions];
    const int terms = product_terms(a, b, s, xs, ys);
    if (terms > 0) form(out.set(s, xs[0]->rows(), xs[0]->cols()), xs, ys, terms);
  }
}

}  // namespace

void jet_matmul(const Jet& a, Op op_a, const Jet& b, Op op_b, Jet& out, unsigned wanted) {
  const auto shape = [&](const Buffer& x, const Buffer& y) {
    return std::pair<Index, Index>{op_a == Op::none ? x.rows() : x.cols(), op_b == Op::none ? y.cols() : y.rows()};
  };
  const auto product = [&](Buffer& o, const Buffer& x, const Buffer& y, bool first) {
    gemm(1.0, x, op_a, y, op_b, first ? 0.0 : 1.0, o);
  };
  jet_product(a, b, out, wanted, product, shape);
}

// Each component in one pass: o = x_1 y_1, then o = fma(x_k, y_k, o) for the further terms in the order of
// jet_product, as its compiled `o += x y` (contracted to an FMA) did in one pass per term: the same bits.
void jet_hadamard(const Jet& a, const Jet& b, Jet& out) {
  for_each_product_component(a, b, out, [](Buffer& component, const Buffer* const* xs, const Buffer* const* ys, int terms) {
    const double* x[1 << max_jet_directions];
    const double* y[1 << max_jet_directions];
    for (int k = 0; k < terms; ++k) x[k] = xs[k]->data(), y[k] = ys[k]->data();
    double* o = component.data();
    const Index n = component.size();
    if (terms == 1) {
      for (Index i = 0; i < n; ++i) o[i] = x[0][i] * y[0][i];
    } else if (terms == 2) {
      for (Index i = 0; i < n; ++i) o[i] = std::fma(x[1][i], y[1][i], x[0][i] * y[0][i]);
    } else {
      for (Index i = 0; i < n; ++i) o[i] = std::fma(x[2][i], y[2][i], std::fma(x[1][i], y[1][i], x[0][i] * y[0][i]));
      for (int k = 3; k < terms; ++k)
        for (Index i = 0; i < n; ++i) o[i] = std::fma(x[k][i], y[k][i], o[i]);
    }
  });
}

int product_terms(const Jet& a, const Jet& b, int s, const Buffer** x, const Buffer** y) {
  int terms = 0;
  for (int t = s;; t = (t - 1) & s) {
    const int u = s ^ t;
    if (t < a.size() && u < b.size() && a.nz[static_cast<std::size_t>(t)] && b.nz[static_cast<std::size_t>(u)]) {
      x[terms] = &a.c[static_cast<std::size_t>(t)];
      y[terms] = &b.c[static_cast<std::size_t>(u)];
      ++terms;
    }
    if (t == 0) break;
  }
  return terms;
}

void jet_scale_columns(const Jet& a, const Jet& row, Jet& out) {
  jet_product(a, row, out, all_components, [](Buffer& o, const Buffer& x, const Buffer& r, bool first) {
    if (first) o.array() = x.array().rowwise() * r.row(0).array(); else o.array() += x.array().rowwise() * r.row(0).array();
  }, same_shape);
}

void jet_scale_rows(const Jet& a, const Jet& column, Jet& out) {
  jet_product(a, column, out, all_components, [](Buffer& o, const Buffer& x, const Buffer& c, bool first) {
    if (first) o.array() = x.array().colwise() * c.col(0).array(); else o.array() += x.array().colwise() * c.col(0).array();
  }, same_shape);
}

namespace {

// The components s >= 1 of f(a) (Faà di Bruno), derivative k being d(k).
template <class Derivative>
void apply_components(const Jet& a, Derivative d, Jet& out) {
  const auto& table = partitions();
  for (int s = 1; s < a.size(); ++s) {
    bool first = true;
    for (const Partition& p : table[static_cast<std::size_t>(s)]) {
      bool zero = false;
      for (int block : p) zero = zero || !a.nz[static_cast<std::size_t>(block)];
      if (zero) continue;
      if (first) out.set(s, a.rows(), a.cols());
      Buffer& o = out.c[static_cast<std::size_t>(s)];
      const auto fk = d(p.size()).array();
      const auto comp = [&](std::size_t i) { return a.c[static_cast<std::size_t>(p[i])].array(); };
      // The first term is added to 0.0 rather than to a zeroed o: the same bits (x + 0 = x but for -0,
      // which both turn into +0), one pass fewer.
      switch (p.size()) {
        case 1: if (first) o.array() = fk * comp(0) + 0.0; else o.array() += fk * comp(0); break;
        case 2: if (first) o.array() = fk * comp(0) * comp(1) + 0.0; else o.array() += fk * comp(0) * comp(1); break;
        case 3: if (first) o.array() = fk * comp(0) * comp(1) * comp(2) + 0.0; else o.array() += fk * comp(0) * comp(1) * comp(2); break;
        default: throw Error("jet_apply: partition too large");
      }
      first = false;
    }
  }
}

}  // namespace

void jet_apply(const Jet& a, const Buffer* d, Jet& out) {
  out.reset(a.m);
  out.set(0, a.rows(), a.cols()) = d[0];
  apply_components(a, [d](std::size_t k) -> const Buffer& { return d[k]; }, out);
}

void jet_apply_in_place(const Jet& a, const Buffer* const* d, Jet& out) {
  apply_components(a, [d](std::size_t k) -> const Buffer& { return *d[k]; }, out);
}

void power_derivatives(const Eigen::Ref<const Matrix>& x, double p, int order, Buffer* d) {
  double coef = 1.0;
  for (int k = 0; k <= order; ++k) {
    d[k] = coef * x.array().pow(p - k).matrix();
    coef *= p - k;
  }
}

void jet_column_sums(const Jet& a, Jet& out) {
  out.reset(a.m);
  for (int s = 0; s < a.size(); ++s)
    if (a.nz[static_cast<std::size_t>(s)]) out.set(s, 1, a.cols()) = a.c[static_cast<std::size_t>(s)].colwise().sum();
}

void jet_row_sums(const Jet& a, Jet& out) {
  out.reset(a.m);
  for (int s = 0; s < a.size(); ++s)
    if (a.nz[static_cast<std::size_t>(s)]) out.set(s, a.rows(), 1) = a.c[static_cast<std::size_t>(s)].rowwise().sum();
}

void jet_add_to_columns(Jet& a, const Jet& column) {
  const int m = std::max(a.m, column.m);
  a.m = m;
  for (int s = 0; s < (1 << m); ++s) {
    if (!column.nz[static_cast<std::size_t>(s)]) continue;
    Buffer& x = a.c[static_cast<std::size_t>(s)];
    if (!a.nz[static_cast<std::size_t>(s)]) a.set(s, a.rows(), a.cols()).setZero();
    x.colwise() += column.c[static_cast<std::size_t>(s)].col(0);
  }
}

void jet_subtract_row(Jet& a, const Jet& row) {
  const int m = std::max(a.m, row.m);
  a.m = m;
  for (int s = 0; s < (1 << m); ++s) {
    if (!row.nz[static_cast<std::size_t>(s)]) continue;
    Buffer& x = a.c[static_cast<std::size_t>(s)];
    if (!a.nz[static_cast<std::size_t>(s)]) a.set(s, a.rows(), a.cols()).setZero();
    x.rowwise() -= row.c[static_cast<std::size_t>(s)].row(0);
  }
}

void jet_axpy(double alpha, const Jet& x, Jet& y) {
  const int m = std::max(x.m, y.m);
  y.m = m;
  for (int s = 0; s < (1 << m); ++s) {
    if (!x.nz[static_cast<std::size_t>(s)]) continue;
    const Buffer& xs = x.c[static_cast<std::size_t>(s)];
    if (!y.nz[static_cast<std::size_t>(s)]) {
      y.set(s, xs.rows(), xs.cols()) = alpha * xs;
    } else {
      y.c[static_cast<std::size_t>(s)] += alpha * xs;
    }
  }
}

namespace {

// The samples of a features x samples matrix as pixels x channels matrices (column-major: pixel fastest).
template <class M>
auto sample_image(M& x, Index sample, Index pixels) {
  const Index channels = x.rows() / pixels;
  return Eigen::Map<std::conditional_t<std::is_const_v<M>, const Matrix, Matrix>>(
      x.data() + sample * x.rows(), pixels, channels);
}

}  // namespace

void jet_channel_sums(const Jet& a, Index pixels, Jet& out) {
  out.reset(a.m);
  const Index channels = a.rows() / pixels;
  for (int s = 0; s < a.size(); ++s) {
    if (!a.nz[static_cast<std::size_t>(s)]) continue;
    const Buffer& x = a.c[static_cast<std::size_t>(s)];
    Buffer& o = out.set(s, channels, 1);
    o.setZero();
    for (Index n = 0; n < x.cols(); ++n) o += sample_image(x, n, pixels).colwise().sum().transpose();
  }
}

// Each component in one pass over its terms, as jet_hadamard: o = x_1 c_1, then o = fma(x_k, c_k, o) in
// jet_product's order (the bits of one pass per term with a contracted `o += x c`).
void jet_scale_channels(const Jet& a, const Jet& c, Index pixels, Jet& out) {
  for_each_product_component(a, c, out, [pixels](Buffer& o, const Buffer* const* xs, const Buffer* const* cs, int terms) {
    const Index channels = o.rows() / pixels;
    for (Index n = 0; n < o.cols(); ++n) {
      if (pixels == 1) {  // a vector's features (batchnorm after a dense layer): along the channels
        double* on = o.col(n).data();
        const double* x0 = xs[0]->col(n).data();
        const double* c0 = cs[0]->data();
        for (Index k = 0; k < channels; ++k) on[k] = x0[k] * c0[k];
        for (int t = 1; t < terms; ++t) {
          const double* xt = xs[t]->col(n).data();
          const double* ct = cs[t]->data();
          for (Index k = 0; k < channels; ++k) on[k] = std::fma(xt[k], ct[k], on[k]);
        }
        continue;
      }
      for (Index k = 0; k < channels; ++k) {
        const Index at = n * o.rows() + k * pixels;
        double* on = o.data() + at;
        const double* x0 = xs[0]->data() + at;
        const double c0 = (*cs[0])(k, 0);
        for (Index i = 0; i < pixels; ++i) on[i] = x0[i] * c0;
        for (int t = 1; t < terms; ++t) {
          const double* xt = xs[t]->data() + at;
          const double ct = (*cs[t])(k, 0);
          for (Index i = 0; i < pixels; ++i) on[i] = std::fma(xt[i], ct, on[i]);
        }
      }
    }
  });
}

void jet_add_to_channels(Jet& a, double alpha, const Jet& c, Index pixels) {
  const int m = std::max(a.m, c.m);
  a.m = m;
  for (int s = 0; s < (1 << m); ++s) {
    if (!c.nz[static_cast<std::size_t>(s)]) continue;
    Buffer& x = a.c[static_cast<std::size_t>(s)];
    if (!a.nz[static_cast<std::size_t>(s)]) a.set(s, a.rows(), a.cols()).setZero();
    const Buffer& channel = c.c[static_cast<std::size_t>(s)];
    for (Index k = 0; k < channel.rows(); ++k) {
      const double add = alpha * channel(k, 0);
      for (Index n = 0; n < x.cols(); ++n) sample_image(x, n, pixels).col(k).array() += add;
    }
  }
}

}  // namespace eomlab
