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

// Stride 1 with an output of the input's size (2·pad = K - 1): a patch column of one sample is the input
// plane shifted by (ki - pad, kj - pad), zero outside. Its entries [a, b) of the plane, from the first
// valid entry of the first valid row to the last of the last, read input entry p + shift each, but for
// the entries of invalid columns inside the run, which wrap across a row edge (`zero_wrapped`).
struct Shift {
  Index a = 0, b = 0, shift = 0;  // b <= a: the column is all padding
  Index i0 = 0, i1 = 0, j0 = 0, j1 = 0, w = 0;  // valid rows [i0, i1) and columns [j0, j1)

  Shift(const ConvGeometry& g, Index ki, Index kj) : w(g.w) {
    const Index dy = ki - g.pad, dx = kj - g.pad;
    i0 = std::max<Index>(0, -dy);
    i1 = std::min(g.h, g.h - dy);
    j0 = std::max<Index>(0, -dx);
    j1 = std::min(g.w, g.w - dx);
    shift = dy * g.w + dx;
    if (i1 > i0 && j1 > j0) a = i0 * w + j0, b = (i1 - 1) * w + j1;
  }
  // Zeroes the entries of the invalid columns in the valid rows: those inside [a, b), and some before a
  // or from b on, which are zero already. Nothing if [a, b) is empty (then 0 <= j0 < j1 <= w fails).
  void zero_wrapped(double* column) const {
    if (b <= a || (j0 == 0 && j1 == w)) return;
    for (Index i = i0; i < i1; ++i) {
      for (Index j = 0; j < j0; ++j) column[i * w + j] = 0.0;
      for (Index j = j1; j < w; ++j) column[i * w + j] = 0.0;
    }
  }
};

bool same_size(const ConvGeometry& g) { return g.stride == 1 && g.ho == g.h && g.wo == g.w; }

// gather_patches for same_size(g), input plane (s, c) at planes + s·sample_stride + c·channel_stride.
void gather_shifted(const ConvGeometry& g, const double* planes, Index sample_stride, Index channel_stride, Index count,
                    double* patches) {
  const Index rows = count * g.pixels();
  for (Index c = 0; c < g.c; ++c)
    for (Index ki = 0; ki < g.k; ++ki)
      for (Index kj = 0; kj < g.k; ++kj) {
        const Shift sh(g, ki, kj);
        double* column = patches + ((c * g.k + ki) * g.k + kj) * rows;
        for (Index s = 0; s < count; ++s) {
          double* dst = column + s * g.pixels();
          const double* plane = planes + s * sample_stride + c * channel_stride;
          const Index a = sh.a, b = std::max(sh.a, sh.b);
          std::fill(dst, dst + a, 0.0);
          for (Index p = a; p < b; ++p) dst[p] = plane[p + sh.shift];  // contiguous: vectorized
          std::fill(dst + b, dst + g.pixels(), 0.0);
          sh.zero_wrapped(dst);
        }
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
  constexpr Index target = Index(1) << 15;  // doubles: 256 KB
  return std::max<Index>(1, target / std::max<Index>(1, g.pixels() * std::max(g.patch(), g.out)));
}

void gather_patches(const ConvGeometry& g, const Eigen::Ref<const Matrix>& x, Index first, Index count, Buffer& patches) {
  patches.resize(count * g.pixels(), g.patch());
  gather_patches(g, x, first, count, patches.data());
}

void gather_patches(const ConvGeometry& g, const Eigen::Ref<const Matrix>& x, Index first, Index count, double* patches) {
  const Index rows = count * g.pixels(), st = g.stride;
  if (same_size(g)) {
    if (count > 0) gather_shifted(g, x.col(first).data(), x.outerStride(), g.pixels(), count, patches);
    return;
  }
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

bool adjoint_is_conv(const ConvGeometry& g) { return same_size(g); }

ConvGeometry adjoint_geometry(const ConvGeometry& g) {
  ConvGeometry a = g;
  std::swap(a.c, a.out);
  return a;
}

void flip_kernel(const ConvGeometry& g, const Eigen::Ref<const Matrix>& wt, Eigen::Ref<Matrix> flipped) {
  const Index k = g.k;
  for (Index c = 0; c < g.c; ++c)
    for (Index o = 0; o < g.out; ++o)
      for (Index a = 0; a < k; ++a)
        for (Index b = 0; b < k; ++b) flipped((o * k + a) * k + b, c) = wt((c * k + k - 1 - a) * k + k - 1 - b, o);
}

void gather_stacked_patches(const ConvGeometry& g, const double* stacked, Index count, double* patches) {
  gather_shifted(g, stacked, g.pixels(), count * g.pixels(), count, patches);
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
