// avgpool(K) | maxpool(K): K x K windows with stride K and no padding (floor: trailing rows and columns
// that fill no window are dropped, as torch's defaults do); globalavgpool: the mean over H x W per
// channel, giving a vector of C. No parameters. Average pooling is linear, so every jet component is
// pooled alike; max pooling picks each window's first maximum (torch's tie rule) from the value and
// carries every jet component at that arg-max (it is piecewise linear).
#include <algorithm>
#include <cmath>
#include <vector>

#include "model/layer.hpp"

namespace eomlab {
namespace {

// out_s = f(in_s) for every non-zero component s of a linear map f into `rows` features per sample.
template <class F>
void map_components(const Jet& in, Jet& out, Index rows, F f) {
  out.reset(in.m);
  for (int s = 0; s < in.size(); ++s)
    if (in.nz[static_cast<std::size_t>(s)]) f(in.c[static_cast<std::size_t>(s)], out.set(s, rows, in.cols()));
}

// The K x K windows of stride K of one input shape: window o = (c·Ho + i)·Wo + j covers rows
// iK..iK+K-1 and columns jK..jK+K-1 of channel c.
struct Windows {
  Shape in, out;
  Index k;

  Windows(const Shape& input, Index size) : in(input), out(input.channels, input.height / size, input.width / size), k(size) {}
  bool cover_input() const { return in.height == out.height * k && in.width == out.width * k; }
  // Calls f(o, corner) for every window, corner being the input feature of its entry (0, 0); entry
  // (a, b) is corner + a·W + b.
  template <class F>
  void for_each(F f) const {
    Index o = 0;
    for (Index c = 0; c < out.channels; ++c)
      for (Index i = 0; i < out.height; ++i)
        for (Index j = 0; j < out.width; ++j) f(o++, (c * in.height + i * k) * in.width + j * k);
  }
  // Calls f(o, corner) for the first window of every row of windows (windows o .. o + Wo - 1).
  template <class F>
  void for_each_row(F f) const {
    for (Index c = 0; c < out.channels; ++c)
      for (Index i = 0; i < out.height; ++i) f((c * out.height + i) * out.width, (c * in.height + i * k) * in.width);
  }
};

class AveragePool final : public Layer {
 public:
  explicit AveragePool(const Windows& w) : w_(w) {}
  AveragePool(const AveragePool&) = delete;  // planes_ refers to w_
  AveragePool& operator=(const AveragePool&) = delete;

  std::string text() const override { return "avgpool(" + std::to_string(w_.k) + ")"; }
  Shape output_shape() const override { return w_.out; }

  // Each window's entries summed row by row from 0.0, then scaled; K = 2 (the common case) written out
  // over a row of windows at a time so the compiler vectorizes it, with the same sums in the same order.
  void forward(const ForwardPass&, const Jet& in, Jet& out, Scratch&) override {
    const double scale = 1.0 / static_cast<double>(w_.k * w_.k);
    map_components(in, out, w_.out.size(), [&](const Buffer& x, Buffer& y) {
      for (Index s = 0; s < x.cols(); ++s) {
        const double* column = x.col(s).data();
        if (w_.k == 2) {
          w_.for_each_row([&](Index o, Index corner) { pool_row(column + corner, y.col(s).data() + o); });
          continue;
        }
        w_.for_each([&](Index o, Index corner) {
          double sum = 0.0;
          for (Index a = 0; a < w_.k; ++a)
            for (Index b = 0; b < w_.k; ++b) sum += column[corner + a * w_.in.width + b];
          y(o, s) = scale * sum;
        });
      }
    });
  }
  void backward(const BackwardPass&, const Jet&, const Jet& delta, Jet* delta_in, Scratch&) override {
    if (!delta_in) return;
    const double scale = 1.0 / static_cast<double>(w_.k * w_.k);
    map_components(delta, *delta_in, w_.in.size(), [&](const Buffer& d, Buffer& dx) {
      if (!w_.cover_input()) dx.setZero();
      for (Index s = 0; s < d.cols(); ++s) {
        double* column = dx.col(s).data();
        if (w_.k == 2) {
          w_.for_each_row([&](Index o, Index corner) {
            double* r0 = column + corner;
            double* r1 = r0 + w_.in.width;
            const double* source = d.col(s).data() + o;
            for (Index j = 0; j < w_.out.width; ++j) {
              const double v = scale * source[j];
              r0[2 * j] = v;
              r0[2 * j + 1] = v;
              r1[2 * j] = v;
              r1[2 * j + 1] = v;
            }
          });
          continue;
        }
        w_.for_each([&](Index o, Index corner) {
          const double v = scale * d(o, s);
          for (Index a = 0; a < w_.k; ++a)
            for (Index b = 0; b < w_.k; ++b) column[corner + a * w_.in.width + b] = v;
        });
      }
    });
  }

  // K = 2 windows covering the input: each entry of factor ⊙ δ_in formed from δ's window value at once.
  bool backward_with_factor(const BackwardPass&, const Jet&, const Jet& delta, const Jet& factor, Jet& delta_in,
                            Scratch&) override {
    const DeltaPlanes* planes = delta_planes(delta, factor);
    if (!planes) return false;
    const Index plane = w_.in.height * w_.in.width;
    delta_in.reset(planes->m());
    for (int c = 0; c < delta_in.size(); ++c) {
      if (!planes->nz(c)) continue;
      Buffer& out = delta_in.set(c, w_.in.size(), delta.cols());
      for (Index s = 0; s < delta.cols(); ++s)
        for (Index ch = 0; ch < w_.in.channels; ++ch) planes->write(c, s, ch, out.col(s).data() + ch * plane);
    }
    return true;
  }
  PlaneRole plane_role() const override { return w_.k == 2 && w_.cover_input() ? PlaneRole::pool : PlaneRole::none; }
  void pool_plane(const Jet& in, Jet& out, Index s, Index channel, Index cols) override {
    if (s == 0 && channel == 0) {
      out.reset(in.m);
      for (int c = 0; c < in.size(); ++c)
        if (in.nz[static_cast<std::size_t>(c)]) out.set(c, w_.out.size(), cols);
    }
    const Index out_plane = w_.out.height * w_.out.width;
    for (int c = 0; c < out.size(); ++c) {
      if (!out.nz[static_cast<std::size_t>(c)]) continue;
      double* target = out.c[static_cast<std::size_t>(c)].col(s).data() + channel * out_plane;
      for (Index i = 0; i < w_.out.height; ++i)
        pool_row(in.c[static_cast<std::size_t>(c)].data() + 2 * i * w_.in.width, target + i * w_.out.width);
    }
  }
  const DeltaPlanes* delta_planes(const Jet& delta, const Jet& factor) override {
    if (w_.k != 2 || !w_.cover_input()) return nullptr;
    planes_.point(delta, factor);
    return &planes_;
  }

 private:
  // One row of 2 x 2 windows whose first window's entry (0, 0) is at r0: each window's entries summed
  // row by row from 0.0, then scaled (written out so the compiler vectorizes it).
  void pool_row(const double* r0, double* target) const {
    const double* r1 = r0 + w_.in.width;
    for (Index j = 0; j < w_.out.width; ++j) target[j] = 0.25 * ((((0.0 + r0[2 * j]) + r0[2 * j + 1]) + r1[2 * j]) + r1[2 * j + 1]);
  }

  // factor ⊙ spread(δ) for windows of 2 x 2 covering the input: component c's entry sums the product
  // rule's terms as product_terms orders them (the bits of jet_hadamard after the plain spread).
  class FactorPlanes final : public DeltaPlanes {
   public:
    explicit FactorPlanes(const Windows& w) : w_(w) {}
    void point(const Jet& delta, const Jet& factor) {
      m_ = std::max(factor.m, delta.m);
      cols_ = delta.cols();
      for (int c = 0; c < (1 << m_); ++c) terms_[c] = product_terms(factor, delta, c, x_[c], y_[c]);
    }
    int m() const override { return m_; }
    bool nz(int c) const override { return terms_[c] > 0; }
    Index cols() const override { return cols_; }
    void write(int c, Index s, Index channel, double* plane) const override {
      switch (terms_[c]) {  // a fixed number of terms lets the compiler vectorize the row
        case 1: return write_rows<1>(c, s, channel, plane);
        case 2: return write_rows<2>(c, s, channel, plane);
        case 3: return write_rows<3>(c, s, channel, plane);
        case 4: return write_rows<4>(c, s, channel, plane);
        default: return write_rows<0>(c, s, channel, plane);
      }
    }

   private:
    // Terms > 0: that many terms; 0: terms_[c] of them.
    template <int Terms>
    void write_rows(int c, Index s, Index channel, double* plane) const {
      constexpr double scale = 0.25;
      const int terms = Terms > 0 ? Terms : terms_[c];
      const double* f[1 << max_jet_directions];
      const double* source[1 << max_jet_directions];
      for (Index i = 0; i < w_.out.height; ++i)
        for (Index r = 0; r < 2; ++r) {
          const Index at = (2 * i + r) * w_.in.width;  // in the plane
          const Index row = channel * w_.in.height * w_.in.width + at, o = (channel * w_.out.height + i) * w_.out.width;
          for (int k = 0; k < terms; ++k) f[k] = x_[c][k]->col(s).data() + row, source[k] = y_[c][k]->col(s).data() + o;
          double* target = plane + at;
          for (Index j = 0; j < w_.out.width; ++j) {
            double v = scale * source[0][j];
            double left = f[0][2 * j] * v, right = f[0][2 * j + 1] * v;
            for (int k = 1; k < terms; ++k) {
              v = scale * source[k][j];
              left = std::fma(f[k][2 * j], v, left);
              right = std::fma(f[k][2 * j + 1], v, right);
            }
            target[2 * j] = left;
            target[2 * j + 1] = right;
          }
        }
    }

    const Windows& w_;
    int m_ = 0;
    Index cols_ = 0;
    int terms_[1 << max_jet_directions] = {};
    const Buffer* x_[1 << max_jet_directions][1 << max_jet_directions] = {};
    const Buffer* y_[1 << max_jet_directions][1 << max_jet_directions] = {};
  };

  Windows w_;
  FactorPlanes planes_{w_};
};

class MaxPool final : public Layer {
 public:
  explicit MaxPool(const Windows& w) : w_(w) {}

  std::string text() const override { return "maxpool(" + std::to_string(w_.k) + ")"; }
  Shape output_shape() const override { return w_.out; }
  Index held_size() const override { return 2 * w_.out.size(); }  // and arg_max_

  // The value's maxima are written as they are found; the derivative components are read at them.
  void forward(const ForwardPass&, const Jet& in, Jet& out, Scratch&) override {
    out.reset(in.m);
    find_maxima(in.c[0], out.set(0, w_.out.size(), in.cols()));
    for (int c = 1; c < in.size(); ++c)
      if (in.nz[static_cast<std::size_t>(c)]) {
        const Buffer& x = in.c[static_cast<std::size_t>(c)];
        Buffer& y = out.set(c, w_.out.size(), in.cols());
        for (Index s = 0; s < x.cols(); ++s)
          for (Index o = 0; o < y.rows(); ++o) y(o, s) = x(at(o, s), s);
      }
  }
  void backward(const BackwardPass&, const Jet&, const Jet& delta, Jet* delta_in, Scratch&) override {
    if (!delta_in) return;
    map_components(delta, *delta_in, w_.in.size(), [&](const Buffer& d, Buffer& dx) {
      dx.setZero();
      for (Index s = 0; s < d.cols(); ++s)
        for (Index o = 0; o < d.rows(); ++o) dx(at(o, s), s) = d(o, s);
    });
  }

 private:
  Windows w_;
  std::vector<Index> arg_max_;  // input feature of each output (o, s), at o + s·outputs

  Index at(Index o, Index s) const { return arg_max_[static_cast<std::size_t>(o + s * w_.out.size())]; }

  // The best entry so far (index and value) and entry f: f if it is larger, or the first NaN (it
  // propagates, as in torch). Written as selects, which compile without branches.
  struct Best {
    Index at;
    double value;
  };
  static Best better(const double* column, Best best, Index f) {
    const double v = column[f];
    const bool take = v > best.value || (v != v && best.value == best.value);
    return {take ? f : best.at, take ? v : best.value};
  }

  // The first maximum of each window in row-major order, its index into arg_max_ and its value into
  // `max`; K = 2 (the common case) written out over a row of windows at a time, with the same
  // comparisons in the same order.
  void find_maxima(const Buffer& x, Buffer& max) {
    arg_max_.resize(static_cast<std::size_t>(w_.out.size() * x.cols()));
    const Index width = w_.in.width;
    for (Index s = 0; s < x.cols(); ++s) {
      const double* column = x.col(s).data();
      Index* arg = arg_max_.data() + s * w_.out.size();
      double* value = max.col(s).data();
      if (w_.k == 2) {
        w_.for_each_row([&](Index o, Index corner) {
          for (Index j = 0; j < w_.out.width; ++j) {
            const Index f = corner + 2 * j;
            Best best{f, column[f]};
            best = better(column, best, f + 1);
            best = better(column, best, f + width);
            best = better(column, best, f + width + 1);
            arg[o + j] = best.at;
            value[o + j] = best.value;
          }
        });
        continue;
      }
      w_.for_each([&](Index o, Index corner) {
        Best best{corner, column[corner]};
        for (Index a = 0; a < w_.k; ++a)
          for (Index b = 0; b < w_.k; ++b) best = better(column, best, corner + a * width + b);
        arg[o] = best.at;
        value[o] = best.value;
      });
    }
  }
};

class GlobalAveragePool final : public Layer {
 public:
  explicit GlobalAveragePool(const Shape& in) : in_(in) {}

  std::string text() const override { return "globalavgpool"; }
  Shape output_shape() const override { return in_.channels; }

  // Sample s's features as a (H·W) x C matrix: one column per channel.
  void forward(const ForwardPass&, const Jet& in, Jet& out, Scratch&) override {
    map_components(in, out, in_.channels, [&](const Buffer& x, Buffer& y) {
      for (Index s = 0; s < x.cols(); ++s) y.col(s) = channels(x, s).colwise().mean().transpose();
    });
  }
  void backward(const BackwardPass&, const Jet&, const Jet& delta, Jet* delta_in, Scratch&) override {
    if (!delta_in) return;
    const double scale = 1.0 / static_cast<double>(in_.pixels());
    map_components(delta, *delta_in, in_.size(), [&](const Buffer& d, Buffer& dx) {
      for (Index s = 0; s < d.cols(); ++s)
        for (Index k = 0; k < in_.channels; ++k)
          dx.col(s).segment(k * in_.pixels(), in_.pixels()).setConstant(scale * d(k, s));
    });
  }

 private:
  Shape in_;

  Eigen::Map<const Matrix> channels(const Buffer& x, Index s) const {
    return {x.col(s).data(), in_.pixels(), in_.channels};
  }
};

Windows windows_for(const LayerSpec& spec, const Shape& in) {
  const std::string usage = spec.name + "(K) with a whole K > 0";
  if (spec.args.size() != 1) spec.refuse(usage);
  const long k = spec.whole(spec.args[0], usage);
  if (in.is_vector()) spec.refuse("an image input C x H x W, got a vector of " + in.text());
  if (k > in.height || k > in.width) spec.refuse("a window no larger than the input, got K = " + std::to_string(k) + " on " + in.text());
  return {in, static_cast<Index>(k)};
}

}  // namespace

std::unique_ptr<Layer> make_avgpool(const LayerSpec& spec, const Shape& in) {
  return std::make_unique<AveragePool>(windows_for(spec, in));
}

std::unique_ptr<Layer> make_maxpool(const LayerSpec& spec, const Shape& in) {
  return std::make_unique<MaxPool>(windows_for(spec, in));
}

std::unique_ptr<Layer> make_globalavgpool(const LayerSpec& spec, const Shape& in) {
  if (!spec.args.empty()) spec.refuse("no arguments");
  if (in.is_vector()) spec.refuse("an image input C x H x W, got a vector of " + in.text());
  return std::make_unique<GlobalAveragePool>(in);
}

}  // namespace eomlab
