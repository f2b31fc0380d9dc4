#include "model/conv_lowering.hpp"

#include <algorithm>
#include <cstring>

namespace eomlab {
namespace {

// The output columns j in [lo, hi) whose input column j·stride - pad + kj lies inside [0, w).
struct ValidRange {
  Index lo, hi;
};

Index first_reaching(const ConvGeometry& g, Index target, Index kj) {
  const Index num = target + g.pad - kj;
  return num <= 0 ? 0 : std::min(g.wo, (num + g.stride - 1) / g.stride);
}

ValidRange valid_columns(const ConvGeometry& g, Index kj) {
  const Index lo = first_reaching(g, 0, kj);
  return {lo, std::max(lo, first_reaching(g, g.w, kj))};
}

// Calls f(s, at, inside, from, range) for each (sample s, output row) of one patch column (c, ki, kj):
// the row's Wo entries start at `at` in the column; unless the row lies in the padding (!inside), entry j
// in `range` reads input feature from + j·stride of sample s.
template <class F>
void for_each_patch_row(const ConvGeometry& g, Index count, Index c, Index ki, Index kj, F f) {
  const ValidRange r = valid_columns(g, kj);
  for (Index s = 0; s < count; ++s)
    for (Index i = 0; i < g.ho; ++i) {
      const Index hi = i * g.stride - g.pad + ki;
      const bool inside = hi >= 0 && hi < g.h;
      f(s, s * g.pixels() + i * g.wo, inside, (c * g.h + hi) * g.w + kj - g.pad, r);
    }
}

}  // namespace

void ConvGeometry::set_input(const Shape& in) {
  c = in.channels;
  h = in.height;
  w = in.width;
  ho = (h + 2 * pad - k) / stride + 1;
  wo = (w + 2 * pad - k) / stride + 1;
}

Index conv_chunk_samples(const ConvGeometry& g) {
  constexpr Index target = Index(1) << 19;  // doubles: 4 MB
  return std::max<Index>(1, target / std::max<Index>(1, g.pixels() * std::max(g.patch(), g.out)));
}

void gather_patches(const ConvGeometry& g, const Eigen::Ref<const Matrix>& x, Index first, Index count, Buffer& patches) {
  patches.resize(count * g.pixels(), g.patch());
  gather_patches(g, x, first, count, patches.data());
}

void gather_patches(const ConvGeometry& g, const Eigen::Ref<const Matrix>& x, Index first, Index count, double* patches) {
  const Index rows = count * g.pixels(), st = g.stride;
  for (Index c = 0; c < g.c; ++c)
    for (Index ki = 0; ki < g.k; ++ki)
      for (Index kj = 0; kj < g.k; ++kj) {
        double* column = patches + ((c * g.k + ki) * g.k + kj) * rows;
        for_each_patch_row(g, count, c, ki, kj, [&](Index s, Index at, bool inside, Index from, ValidRange r) {
          double* dst = column + at;
          if (!inside) {
            std::fill(dst, dst + g.wo, 0.0);
            return;
          }
          std::fill(dst, dst + r.lo, 0.0);
          if (r.hi > r.lo) {
            const double* src = x.col(first + s).data() + from + r.lo * st;
            if (st == 1)  // contiguous: vectorized in place (rows are short; a memmove call costs more)
              for (Index j = r.lo; j < r.hi; ++j) dst[j] = src[j - r.lo];
            else
              for (Index j = r.lo; j < r.hi; ++j) dst[j] = src[(j - r.lo) * st];
          }
          std::fill(dst + r.hi, dst + g.wo, 0.0);
        });
      }
}

void scatter_patches(const ConvGeometry& g, const Eigen::Ref<const Matrix>& patches, Index first, Index count, Buffer& dx) {
  dx.middleCols(first, count).setZero();
  const Index st = g.stride;
  for (Index c = 0; c < g.c; ++c)
    for (Index ki = 0; ki < g.k; ++ki)
      for (Index kj = 0; kj < g.k; ++kj) {
        const double* column = patches.col((c * g.k + ki) * g.k + kj).data();
        for_each_patch_row(g, count, c, ki, kj, [&](Index s, Index at, bool inside, Index from, ValidRange r) {
          if (!inside || r.hi == r.lo) return;
          const double* src = column + at + r.lo;
          double* dst = dx.col(first + s).data() + from + r.lo * st;
          const Index len = r.hi - r.lo;
          if (st == 1)
            for (Index j = 0; j < len; ++j) dst[j] += src[j];  // contiguous: vectorized
          else
            for (Index j = 0; j < len; ++j) dst[j * st] += src[j];
        });
      }
}

void stack_columns(const ConvGeometry& g, const Eigen::Ref<const Matrix>& y, Index first, Index count, Buffer& stacked) {
  stacked.resize(count * g.pixels(), g.out);
  stack_columns(g, y, first, count, stacked.data());
}

void stack_columns(const ConvGeometry& g, const Eigen::Ref<const Matrix>& y, Index first, Index count, double* stacked) {
  const Index p = g.pixels();
  for (Index o = 0; o < g.out; ++o)
    for (Index s = 0; s < count; ++s)
      std::memcpy(stacked + (o * count + s) * p, y.col(first + s).data() + o * p, sizeof(double) * static_cast<std::size_t>(p));
}

void unstack_columns(const ConvGeometry& g, const Eigen::Ref<const Matrix>& stacked, const Buffer* bias, Index first, Buffer& y) {
  const Index p = g.pixels();
  for (Index s = 0; s < stacked.rows() / p; ++s)
    for (Index o = 0; o < g.out; ++o) {
      auto target = y.col(first + s).segment(o * p, p);
      const auto source = stacked.col(o).segment(s * p, p);
      if (bias)
        target.array() = source.array() + (*bias)(o, 0);
      else
        target = source;
    }
}

}  // namespace eomlab
