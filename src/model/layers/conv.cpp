// conv(OUT, K[, stride=S][, pad=P]): 2-D cross-correlation as torch.nn.Conv2d, W (OUT x C x K x K,
// row-major) then b (OUT) in θ, zero padding, output OUT x Ho x Wo with Ho = (H + 2P - K)/S + 1.
// Default initialisation W ~ N(0, 1/(C·K·K)), b ~ N(0, 0.1²).
//
// Lowered to GEMMs on chunks of samples (model/conv_lowering.hpp): a chunk's patches A (one row per
// sample and output pixel, one column per (c, ki, kj)) times Wᵀ (C·K·K x OUT, which is θ's W as it
// lies) gives the chunk's outputs, one column per channel. The patches are rebuilt in the backward pass
// from the input jet rather than kept, so memory stays a few chunks whatever the batch. A conv with
// an output of its input's size and an input delta to give (adjoint_is_conv) builds the adjoint conv's
// patches of δ instead: times the flipped kernel they are the input delta, times the inputs the weight
// gradient (flipped). Otherwise δ·W's patch deltas are scattered back. In a pass with directions, the
// terms of several components that share the value's patches (or δ's adjoint patches) are one GEMM
// (a fan: fan_width). A stride-1 conv with few taps (model/conv_direct.hpp) forms its value from the
// padded input instead of patches; when its input has no directional parts (a first layer, or any
// layer in a gradient pass) it forms all its outputs so, and its weight gradient too unless the adjoint
// conv gives it.
#include <array>
#include <cmath>
#include <new>
#include <optional>

#include "model/conv_direct.hpp"
#include "model/conv_lowering.hpp"
#include "model/gemm.hpp"
#include "model/layer.hpp"

namespace eomlab {
namespace {

using ConstColumns = Eigen::Map<const Matrix>;

// Calls f(t) for every t ⊆ s with a[t] and b[s ∖ t] non-zero: the terms of the product rule.
template <class F>
void for_each_term(const Jet& a, const Jet& b, int s, F f) {
  for (int t = s;; t = (t - 1) & s) {
    const int u = s ^ t;
    if (t < a.size() && u < b.size() && a.nz[static_cast<std::size_t>(t)] && b.nz[static_cast<std::size_t>(u)]) f(t, u);
    if (t == 0) break;
  }
}

bool has_term(const Jet& a, const Jet& b, int s) {
  bool any = false;
  for_each_term(a, b, s, [&](int, int) { any = true; });
  return any;
}

// Terms t = top, top - 1, .., top - length + 1 of a's side of the product rule for component s: they
// share the GEMM's output, and the jet components of a chunk lie side by side in decreasing order
// (column block B - 1 - t of B), so the run is one GEMM against the matching parts of b stacked.
struct Run {
  int top = -1, length = 0;
  bool contains(int t) const { return length > 0 && t <= top && t > top - length; }
};

// The longest run of two or more terms t >= lowest (length 0 if there is none).
Run longest_run(const Jet& a, const Jet& b, int s, int lowest = 0) {
  Run best, current;
  int previous = -2;
  for_each_term(a, b, s, [&](int t, int) {
    if (t < lowest) return;
    if (t == previous - 1) {
      ++current.length;
    } else {
      current = {t, 1};
    }
    previous = t;
    if (current.length > best.length) best = current;
  });
  if (best.length < 2) best = {};
  return best;
}

// A fan: A_0's terms of components 0 .. L-1 (A_0 b_s) as one GEMM A_0 [b_0 | .. | b_{L-1}] into those
// components' blocks side by side, the rest of their terms added after. A_0 is packed once, where each
// component's merged run would pack it again. Its width L: how many of b's first components are
// non-zero if at least 2 and a's component 0 is, else 0.
int fan_width(const Jet& a, const Jet& b) {
  if (!a.nz[0]) return 0;
  int width = 0;
  while (width < b.size() && b.nz[static_cast<std::size_t>(width)]) ++width;
  return width >= 2 ? width : 0;
}

class Conv final : public Layer {
 public:
  explicit Conv(const ConvGeometry& g) : g_(g) {}

  std::string text() const override {
    return "conv(" + std::to_string(g_.out) + ", " + std::to_string(g_.k) +
           (g_.stride != 1 ? ", stride=" + std::to_string(g_.stride) : "") +
           (g_.pad != 0 ? ", pad=" + std::to_string(g_.pad) : "") + ")";
  }
  Shape output_shape() const override { return {g_.out, g_.ho, g_.wo}; }
  PlaneRole plane_role() const override { return PlaneRole::source; }
  Index n_params() const override { return g_.out * g_.patch() + g_.out; }
  void place(Index offset, const std::string& name) override {
    w_offset_ = offset;
    b_offset_ = offset + g_.out * g_.patch();
    name_ = name;
  }
  std::vector<ParameterBlock> blocks() const override {
    return {{name_ + ".W", w_offset_, g_.out * g_.patch(), g_.out, g_.patch()}, {name_ + ".b", b_offset_, g_.out, g_.out, 1}};
  }
  void initialize(Rng& rng, Vector& theta) const override {
    const double w_std = 1.0 / std::sqrt(static_cast<double>(g_.patch()));
    for (Index k = 0; k < g_.out * g_.patch(); ++k) theta[w_offset_ + k] = w_std * rng.normal();
    for (Index k = 0; k < g_.out; ++k) theta[b_offset_ + k] = 0.1 * rng.normal();
  }
  std::optional<ParameterBlock> linear_block() const override {
    return ParameterBlock{name_ + ".Wb", w_offset_, n_params(), n_params(), 1};
  }
  std::vector<ParameterBlock> channel_blocks() const override {
    std::vector<ParameterBlock> out;
    for (Index r = 0; r < g_.out; ++r)
      out.push_back({name_ + ".W[" + std::to_string(r) + "]", w_offset_ + r * g_.patch(), g_.patch(), 1, g_.patch()});
    return out;
  }

  void forward(const ForwardPass& pass, const Jet& in, Jet& out, Scratch&) override {
    const Index n = in.cols(), pixels = g_.pixels();
    out.reset(pass.m);
    start_forward(pass, in, out.nz);
    for (int s = 0; s < out.size(); ++s)
      if (out.nz[static_cast<std::size_t>(s)]) out.set(s, g_.out * pixels, n);
    for (Index first = 0; first < n; first += chunk_) {
      const Index count = std::min(chunk_, n - first);
      gather_components(in, first, count);
      // One sample's stacked outputs of a component are its column: the GEMMs write there directly,
      // unless a fan writes the components side by side.
      const bool stacked = count > 1 || fan_ > 0;
      if (stacked) {
        stacked_storage_.resize(count * pixels, out.size() * g_.out);
        fan_products();
      }
      for (int s = 0; s < out.size(); ++s) {
        if (!out.nz[static_cast<std::size_t>(s)]) continue;
        Buffer& y = out.c[static_cast<std::size_t>(s)];
        Columns target(stacked ? stacked_storage_.data() + s * count * pixels * g_.out : y.col(first).data(), count * pixels, g_.out);
        products(in, s, target);
        const Buffer* bias = b_.nz[static_cast<std::size_t>(s)] ? &b_.c[static_cast<std::size_t>(s)] : nullptr;
        if (stacked)
          unstack_columns(g_, target, bias, first, y);
        else if (bias)
          target.rowwise() += bias->col(0).transpose();
      }
    }
  }

  // Every component of a chunk's outputs stacked, then handed on plane by plane, the bias added on the
  // way as unstack_columns adds it.
  bool forward_to_planes(const ForwardPass& pass, const Jet& in, PlaneSink& sink, Scratch&) override {
    const Index n = in.cols(), pixels = g_.pixels();
    if (n == 0) return false;  // no plane would size the layers' outputs
    plane_.reset(pass.m);
    start_forward(pass, in, plane_.nz);
    for (int s = 0; s < plane_.size(); ++s)
      if (plane_.nz[static_cast<std::size_t>(s)]) plane_.set(s, pixels, 1);
    for (Index first = 0; first < n; first += chunk_) {
      const Index count = std::min(chunk_, n - first);
      gather_components(in, first, count);
      stacked_storage_.resize(count * pixels, plane_.size() * g_.out);
      fan_products();
      const auto stacked = [&](int s) { return Columns(stacked_storage_.data() + s * count * pixels * g_.out, count * pixels, g_.out); };
      for (int s = 0; s < plane_.size(); ++s)
        if (plane_.nz[static_cast<std::size_t>(s)]) {
          Columns y = stacked(s);
          products(in, s, y);
        }
      for (Index i = 0; i < count; ++i)
        for (Index o = 0; o < g_.out; ++o) {
          for (int s = 0; s < plane_.size(); ++s) {
            const auto k = static_cast<std::size_t>(s);
            if (!plane_.nz[k]) continue;
            const auto source = stacked(s).col(o).segment(i * pixels, pixels);
            if (b_.nz[k])
              plane_.c[k].col(0).array() = source.array() + b_.c[k](o, 0);
            else
              plane_.c[k].col(0) = source;
          }
          sink.plane(first + i, o, plane_);
        }
    }
    return true;
  }

  void backward(const BackwardPass& pass, const Jet& in, const Jet& delta, Jet* delta_in, Scratch& s) override {
    run_backward(pass, in, delta, nullptr, delta.cols(), delta_in, s);
  }
  // δ's planes go straight into the stacked chunks; `pattern_` carries which of its components are non-zero,
  // and without an input delta only those the gradients read are formed.
  bool backward_from_planes(const BackwardPass& pass, const Jet& in, const DeltaPlanes& planes, Jet* delta_in,
                            Scratch& s) override {
    pattern_.reset(planes.m());
    for (int c = 0; c < pattern_.size(); ++c)
      pattern_.nz[static_cast<std::size_t>(c)] = planes.nz(c) && (delta_in || gradients_read(pass, in, c));
    run_backward(pass, in, pattern_, &planes, planes.cols(), delta_in, s);
    return true;
  }

 private:
  // δ's components are read from `delta` or, if given, from `planes` (then `delta` only says which are non-zero).
  void run_backward(const BackwardPass& pass, const Jet& in, const Jet& delta, const DeltaPlanes* planes, Index n,
                    Jet* delta_in, Scratch& s) {
    start_gradients(pass, in, delta, s);
    if (delta_in) start_input_delta(*delta_in, delta, in.rows(), n);
    blocks_ = 1 << pass.m;
    // The adjoint conv's patches of δ serve the weight gradient too: the input's patches are not rebuilt.
    const bool adjoint = adjoint_conv_ && delta_in;
    if (adjoint) start_flipped_gradients(s);
    direct_pass_ = direct_ && !adjoint && data_only(in) ? Direct::all : Direct::none;
    if (direct_pass_ == Direct::all) start_direct_sums(s);
    for (Index first = 0; first < n; first += chunk_) {
      const Index count = std::min(chunk_, n - first);
      stack_deltas(delta, planes, first, count);
      if (adjoint) {
        gather_delta_patches(delta, count);
        stack_inputs(in, first, count);
      } else {
        gather_components(in, first, count);
      }
      accumulate_gradients(pass, in, delta, s, adjoint, first, count);
      if (adjoint)
        adjoint_input_delta(delta, *delta_in, first, count);
      else if (delta_in)
        scatter_input_delta(delta, *delta_in, first, count);
    }
    if (adjoint) unflip_gradients(s);
    if (direct_pass_ == Direct::all) finish_direct_sums(s);
    pass.write(s.grad_w, w_offset_, g_.out, g_.patch());
    pass.write(s.grad_b, b_offset_, g_.out, 1);
  }

  ConvGeometry g_;
  Index chunk_ = conv_chunk_samples(g_);
  Index w_offset_ = 0, b_offset_ = 0;
  std::string name_;
  Jet w_, b_;  // Wᵀ (C·K·K x OUT) and b with their directional parts
  Jet pattern_;  // no storage: the non-zero components of δ given as planes
  Jet plane_;    // one output plane (forward_to_planes)
  using Columns = Eigen::Map<Matrix>;
  // One chunk: the patches of every jet component side by side (component t in column block
  // blocks_ - 1 - t), likewise δ stacked (for one sample of a plain gradient, a view of δ's column).
  int blocks_ = 1;
  Buffer patches_, delta_storage_;
  std::array<ConstColumns, 1 << max_jet_directions> deltas_{make_views()};
  // Per component: the merged run of terms and the parameter parts stacked to match it (forward: W_u
  // stacked vertically; backward: W_v side by side, used transposed, or the adjoint's flipped W_v
  // stacked vertically).
  std::array<Run, 1 << max_jet_directions> runs_{}, input_delta_runs_{};
  Buffer stacked_w_[1 << max_jet_directions], side_w_[1 << max_jet_directions];
  Buffer stacked_storage_, patch_delta_;
  // The adjoint conv of an output of the input's size: its geometry, its weights (the kernel flipped,
  // OUT·K·K x C per component) and a chunk's patches of δ (component u in column block blocks_ - 1 - u).
  const bool adjoint_conv_ = adjoint_is_conv(g_);
  const ConvGeometry adjoint_ = adjoint_conv_ ? adjoint_geometry(g_) : g_;
  // With them the weight gradient is summed flipped (flipped_grad_: C x OUT·K·K per component, G(c,
  // (o·K + a)·K + b) = ∂/∂W[o, c, K-1-a, K-1-b]) from a chunk's inputs stacked (stacked_in_, component t
  // in column block blocks_ - 1 - t; for one sample, its column).
  Jet flipped_w_, flipped_grad_;
  Buffer delta_patches_, stacked_in_;
  // The fans (fan_width) of the forward products (W_0 | W_1 | ..) and of the adjoint conv's input delta
  // (its flipped kernels F_0 | F_1 | ..): their widths, 0 where there is none, and their right sides.
  int fan_ = 0, input_fan_ = 0;
  Buffer fan_w_, input_fan_w_;
  // Direct products (DirectConv::applies). Which of them a pass takes: every one when the input is data
  // alone (no patches then; the weight gradient is summed in partial sums, unless the adjoint conv gives
  // it), else in a forward pass the value's (A_0·W_0), so that the value has the same bits in every pass.
  enum class Direct { none, value, all };
  std::optional<DirectConv> direct_ = DirectConv::applies(g_) ? std::optional<DirectConv>(g_) : std::nullopt;
  Direct direct_pass_ = Direct::none;
  std::array<Buffer, 1 << max_jet_directions> direct_sums_;

  // Whether the wanted gradient components read δ's component u: ∂/∂b_w reads δ_w, and ∂/∂W_w the δ_u
  // whose input component w ∖ u is non-zero. An HVP's first conv (its input the data alone) reads δ_1 but
  // not δ_0, T's δ_3 alone: the pool's planes of the others are not formed (the same bits).
  static bool gradients_read(const BackwardPass& pass, const Jet& in, int u) {
    for (int w = 0; w < (1 << pass.m); ++w) {
      const int t = w ^ u;
      if ((pass.wanted() & (1u << w)) && (w & u) == u && (t == 0 || (t < in.size() && in.nz[static_cast<std::size_t>(t)])))
        return true;
    }
    return false;
  }
  static bool data_only(const Jet& in) {
    for (int t = 1; t < in.size(); ++t)
      if (in.nz[static_cast<std::size_t>(t)]) return false;
    return true;
  }
  void start_direct_sums(const Scratch& s) {
    for (int c = 0; c < s.grad_w.size(); ++c)
      if (s.grad_w.nz[static_cast<std::size_t>(c)]) direct_->start_sums(direct_sums_[static_cast<std::size_t>(c)]);
  }
  void finish_direct_sums(Scratch& s) const {
    for (int c = 0; c < s.grad_w.size(); ++c)
      if (s.grad_w.nz[static_cast<std::size_t>(c)])
        direct_->finish(direct_sums_[static_cast<std::size_t>(c)], s.grad_w.c[static_cast<std::size_t>(c)]);
  }

  static std::array<ConstColumns, 1 << max_jet_directions> make_views() {
    return {ConstColumns{nullptr, 0, 0}, ConstColumns{nullptr, 0, 0}, ConstColumns{nullptr, 0, 0}, ConstColumns{nullptr, 0, 0},
            ConstColumns{nullptr, 0, 0}, ConstColumns{nullptr, 0, 0}, ConstColumns{nullptr, 0, 0}, ConstColumns{nullptr, 0, 0}};
  }

  // Loads θ's parts; nz[s] says whether output component s is non-zero; the merged runs of terms.
  void start_forward(const ForwardPass& pass, const Jet& in, std::array<bool, 1 << max_jet_directions>& nz) {
    load_parameters(pass);
    blocks_ = 1 << pass.m;
    direct_pass_ = !direct_ ? Direct::none : data_only(in) ? Direct::all : Direct::value;
    fan_ = direct_pass_ == Direct::none ? fan_for_chunks(fan_width(in, w_), in.cols(), g_.patch(), g_.out) : 0;
    if (fan_) side_by_side(w_, fan_, [](int i) { return i; }, fan_w_);
    for (int s = 0; s < blocks_; ++s) {
      nz[static_cast<std::size_t>(s)] = has_term(in, w_, s);
      // Merged terms: Σ A_t W_{s∖t} over the run = [A_top A_top-1 ..] · [W_{s∖top}; W_{s∖(top-1)}; ..].
      runs_[s] = longest_run(in, w_, s, lowest_term(s, fan_));
      stack_run(w_, s, runs_[s], stacked_w_[s]);
    }
  }

  // The fan's width for every chunk of n samples, or 0 unless the BLAS gives its block 0 the bits of
  // A_0 b_0 alone (so that a layer's value and input delta have the same bits in every pass).
  int fan_for_chunks(int width, Index n, Index inner, Index cols) const {
    if (width == 0) return 0;
    for (const Index count : {std::min(chunk_, n), n % chunk_})
      if (count > 0 && !gemm_column_block_keeps_bits(count * g_.pixels(), inner, cols, width)) return 0;
    return width;
  }
  // Component s's terms from t = lowest_term(s, fan) up are its own GEMMs'; the fan gives its term t = 0.
  static int lowest_term(int s, int fan) { return s < fan ? 1 : 0; }

  // out = [b_{part(0)} | b_{part(1)} | ..]: `count` parts of b's shape side by side.
  template <class Part>
  static void side_by_side(const Jet& b, int count, Part part, Buffer& out) {
    const Index cols = b.c[static_cast<std::size_t>(part(0))].cols();
    out.resize(b.c[static_cast<std::size_t>(part(0))].rows(), count * cols);
    for (int i = 0; i < count; ++i) out.middleCols(i * cols, cols) = b.c[static_cast<std::size_t>(part(i))];
  }

  // A fan's GEMM (none if width is 0), a [w_0 | .. | w_{width-1}], into the first `width` blocks of
  // `cols` columns of the chunk's stacked outputs: the forward's A_0 [W_0 | ..] or the adjoint conv's
  // P(D_0) [F_0 | ..].
  void fan_products(int width, const ConstColumns& a, const Buffer& w, Index cols) {
    if (width) gemm(1.0, a, Op::none, w, Op::none, 0.0, stacked_storage_.leftCols(width * cols));
  }
  void fan_products() { fan_products(fan_, patch_blocks(0, 1), fan_w_, g_.out); }

  // out = [W_{s∖top}; W_{s∖(top-1)}; ..] over the merged run r of component s (nothing if r is empty).
  static void stack_run(const Jet& w, int s, const Run& r, Buffer& out) {
    if (r.length == 0) return;
    const Index rows = w.c[static_cast<std::size_t>(s ^ r.top)].rows();
    out.resize(r.length * rows, w.c[static_cast<std::size_t>(s ^ r.top)].cols());
    for (int i = 0; i < r.length; ++i) out.middleRows(i * rows, rows) = w.c[static_cast<std::size_t>(s ^ (r.top - i))];
  }

  // y = Σ_t A_t W_{s∖t}: component s of the chunk's outputs (zero if it has no term).
  void products(const Jet& in, int s, Columns& y) {
    if (direct_pass_ == Direct::all || (direct_pass_ == Direct::value && s == 0)) {  // the one term A_0 W_s
      direct_->forward(w_.c[static_cast<std::size_t>(s)], y.data(), y.outerStride());
      return;
    }
    const Run r = runs_[s];
    sum_of_terms(in, w_, s, lowest_term(s, fan_), r, [&] { return patch_blocks(r.top, r.length); }, stacked_w_[s],
                 [&](int t) { return patch_blocks(t, 1); }, Op::none, y);
  }

  // out = Σ X_t · op(W_u) over the terms (t, u) of component c of x and w (w_ or its flipped kernel)
  // with t >= lowest (those below are in out already, from a fan): the terms of the merged run r as one
  // GEMM of merged() and merged_w, the others one by one with single(t); the first GEMM overwrites out
  // (β = 0) unless lowest > 0, and out is zero if there is no term.
  template <class Merged, class Single>
  void sum_of_terms(const Jet& x, const Jet& w, int c, int lowest, const Run& r, Merged merged,
                    const Eigen::Ref<const Matrix>& merged_w, Single single, Op op, Eigen::Ref<Matrix> out) const {
    double beta = lowest > 0 ? 1.0 : 0.0;
    if (r.length > 0) {
      gemm(1.0, merged(), Op::none, merged_w, op, beta, out);
      beta = 1.0;
    }
    for_each_term(x, w, c, [&](int t, int u) {
      if (t < lowest || r.contains(t)) return;
      gemm(1.0, single(t), Op::none, w.c[static_cast<std::size_t>(u)], op, beta, out);
      beta = 1.0;
    });
    if (beta == 0.0) out.setZero();
  }

  void load_parameters(const ForwardPass& pass) {
    w_.reset(pass.m);
    b_.reset(pass.m);
    const auto load = [&](int s, const Vector& v) {
      w_.set(s, g_.patch(), g_.out) = ConstColumns(v.data() + w_offset_, g_.patch(), g_.out);
      b_.set(s, g_.out, 1) = v.segment(b_offset_, g_.out);
    };
    load(0, pass.theta);
    for (int d = 0; d < pass.m; ++d) load(1 << d, *pass.directions[d]);
  }

  // A chunk's buffer holds one block of `width` columns per jet component, component t in block
  // blocks_ - 1 - t: where t's block starts, and the columns of components t, t - 1, .., t - length + 1.
  Index block_offset(const Buffer& b, Index width, int t) const { return (blocks_ - 1 - t) * b.rows() * width; }
  double* block_start(Buffer& b, Index width, int t) const { return b.data() + block_offset(b, width, t); }
  ConstColumns blocks_of(const Buffer& b, Index width, int t, int length = 1) const {
    return {b.data() + block_offset(b, width, t), b.rows(), length * width};
  }
  ConstColumns patch_blocks(int t, int length) const { return blocks_of(patches_, g_.patch(), t, length); }

  void gather_components(const Jet& in, Index first, Index count) {
    if (direct_pass_ != Direct::none) direct_->load(in.c[0], first, count);
    if (direct_pass_ == Direct::all) return;
    patches_.resize(count * g_.pixels(), blocks_ * g_.patch());
    for (int t = 0; t < in.size(); ++t)
      if (in.nz[static_cast<std::size_t>(t)])
        gather_patches(g_, in.c[static_cast<std::size_t>(t)], first, count, block_start(patches_, g_.patch(), t));
  }

  void stack_deltas(const Jet& delta, const DeltaPlanes* planes, Index first, Index count) {
    delta_storage_.resize(count * g_.pixels(), blocks_ * g_.out);
    for (int u = 0; u < delta.size(); ++u)
      if (delta.nz[static_cast<std::size_t>(u)]) {
        double* block = block_start(delta_storage_, g_.out, u);
        const double* data = block;
        if (planes) {
          for (Index s = 0; s < count; ++s)
            for (Index o = 0; o < g_.out; ++o) planes->write(u, first + s, o, block + (o * count + s) * g_.pixels());
        } else if (count > 1 || blocks_ > 1) {
          stack_columns(g_, delta.c[static_cast<std::size_t>(u)], first, count, block);
        } else {
          data = delta.c[static_cast<std::size_t>(u)].col(first).data();
        }
        new (&deltas_[static_cast<std::size_t>(u)]) ConstColumns(data, count * g_.pixels(), g_.out);
      }
  }

  // The gradient jets (in s.grad_w as W's transpose-free OUT x C·K·K, s.grad_b) start at zero.
  void start_gradients(const BackwardPass& pass, const Jet& in, const Jet& delta, Scratch& s) const {
    s.grad_w.reset(pass.m);
    s.grad_b.reset(pass.m);
    for (int c = 0; c < (1 << pass.m); ++c) {
      if (!(pass.wanted() & (1u << c))) continue;
      if (has_term(delta, in, c)) s.grad_w.set(c, g_.out, g_.patch()).setZero();
      if (delta.nz[static_cast<std::size_t>(c)]) s.grad_b.set(c, g_.out, 1).setZero();
    }
  }

  void start_input_delta(Jet& delta_in, const Jet& delta, Index rows, Index n) {
    delta_in.reset(delta.m);
    if (adjoint_conv_) {
      flipped_w_.reset(w_.m);
      for (int u = 0; u < w_.size(); ++u)
        if (w_.nz[static_cast<std::size_t>(u)]) flip_kernel(g_, w_.c[static_cast<std::size_t>(u)], flipped_w_.set(u, adjoint_.patch(), g_.c));
    }
    input_fan_ = adjoint_conv_ ? fan_for_chunks(fan_width(delta, flipped_w_), n, adjoint_.patch(), g_.c) : 0;
    if (input_fan_) side_by_side(flipped_w_, input_fan_, [](int i) { return i; }, input_fan_w_);
    for (int c = 0; c < delta_in.size(); ++c) {
      if (has_term(delta, w_, c)) delta_in.set(c, rows, n);
      // Merged terms: Σ D_u W_{c∖u}ᵀ over the run = [D_top D_top-1 ..] · [W_{c∖top} W_{c∖(top-1)} ..]ᵀ,
      // or for the adjoint conv [P(D_top) P(D_top-1) ..] · [F_{c∖top}; F_{c∖(top-1)}; ..] with P the
      // adjoint's patches and F its weights.
      input_delta_runs_[c] = longest_run(delta, w_, c, lowest_term(c, input_fan_));
      const Run r = input_delta_runs_[c];
      if (r.length == 0) continue;
      if (adjoint_conv_)
        stack_run(flipped_w_, c, r, side_w_[c]);
      else
        side_by_side(w_, r.length, [&](int i) { return c ^ (r.top - i); }, side_w_[c]);
    }
  }

  // ∂/∂W_S += Σ D_{S∖T}ᵀ A_T (with the adjoint conv: G_S += Σ X_Tᵀ P(D_{S∖T}), X the stacked inputs)
  // and ∂/∂b_S += the column sums of D_S, for the chunk.
  void accumulate_gradients(const BackwardPass& pass, const Jet& in, const Jet& delta, Scratch& s, bool adjoint, Index first,
                            Index count) {
    for (int c = 0; c < (1 << pass.m); ++c) {
      if (s.grad_w.nz[static_cast<std::size_t>(c)])
        for_each_term(delta, in, c, [&](int u, int t) {
          if (direct_pass_ == Direct::all) {  // t = 0, u = c
            const ConstColumns& d = deltas_[static_cast<std::size_t>(u)];
            direct_->accumulate(d.data(), d.outerStride(), direct_sums_[static_cast<std::size_t>(c)]);
          } else if (adjoint)
            gemm(1.0, input_block(in, t, first, count), Op::transpose, delta_patch_blocks(u), Op::none, 1.0,
                 flipped_grad_.c[static_cast<std::size_t>(c)]);
          else
            gemm(1.0, deltas_[static_cast<std::size_t>(u)], Op::transpose, patch_blocks(t, 1), Op::none, 1.0, s.grad_w.c[static_cast<std::size_t>(c)]);
        });
      if (s.grad_b.nz[static_cast<std::size_t>(c)])
        s.grad_b.c[static_cast<std::size_t>(c)] += deltas_[static_cast<std::size_t>(c)].colwise().sum().transpose();
    }
  }

  // ∂/∂A_S = Σ D_U W_{S∖U}ᵀ as patch deltas, scattered back onto the chunk's input columns (convs
  // without the adjoint conv).
  void scatter_input_delta(const Jet& delta, Jet& delta_in, Index first, Index count) {
    for (int c = 0; c < delta_in.size(); ++c) {
      if (!delta_in.nz[static_cast<std::size_t>(c)]) continue;
      patch_delta_.resize(count * g_.pixels(), g_.patch());
      const Run r = input_delta_runs_[c];
      sum_of_terms(delta, w_, c, 0, r, [&] { return blocks_of(delta_storage_, g_.out, r.top, r.length); }, side_w_[c],
                   [&](int u) { return deltas_[static_cast<std::size_t>(u)]; }, Op::transpose, patch_delta_);
      scatter_patches(g_, patch_delta_, first, count, delta_in.c[static_cast<std::size_t>(c)]);
    }
  }

  // The adjoint conv's patches of the chunk's δ.
  void gather_delta_patches(const Jet& delta, Index count) {
    delta_patches_.resize(count * g_.pixels(), blocks_ * adjoint_.patch());
    for (int u = 0; u < delta.size(); ++u)
      if (delta.nz[static_cast<std::size_t>(u)])
        gather_stacked_patches(adjoint_, deltas_[static_cast<std::size_t>(u)].data(), count, block_start(delta_patches_, adjoint_.patch(), u));
  }
  ConstColumns delta_patch_blocks(int u, int length = 1) const { return blocks_of(delta_patches_, adjoint_.patch(), u, length); }

  // The chunk's inputs stacked (count·H·W x C) for several samples; one sample's column is already so.
  void stack_inputs(const Jet& in, Index first, Index count) {
    if (count == 1) return;
    stacked_in_.resize(count * g_.pixels(), blocks_ * g_.c);
    for (int t = 0; t < in.size(); ++t)
      if (in.nz[static_cast<std::size_t>(t)])
        stack_columns(adjoint_, in.c[static_cast<std::size_t>(t)], first, count, block_start(stacked_in_, g_.c, t));
  }
  ConstColumns input_block(const Jet& in, int t, Index first, Index count) const {
    if (count == 1) return {in.c[static_cast<std::size_t>(t)].col(first).data(), g_.pixels(), g_.c};
    return blocks_of(stacked_in_, g_.c, t);
  }

  void start_flipped_gradients(const Scratch& s) {
    flipped_grad_.reset(s.grad_w.m);
    for (int c = 0; c < flipped_grad_.size(); ++c)
      if (s.grad_w.nz[static_cast<std::size_t>(c)]) flipped_grad_.set(c, g_.c, adjoint_.patch()).setZero();
  }
  // ∂/∂W[o, c, a, b] = G(c, (o·K + K-1-a)·K + K-1-b).
  void unflip_gradients(Scratch& s) const {
    const Index k = g_.k;
    for (int c = 0; c < flipped_grad_.size(); ++c) {
      if (!flipped_grad_.nz[static_cast<std::size_t>(c)]) continue;
      const Buffer& from = flipped_grad_.c[static_cast<std::size_t>(c)];
      Buffer& to = s.grad_w.c[static_cast<std::size_t>(c)];
      for (Index o = 0; o < g_.out; ++o)
        for (Index ch = 0; ch < g_.c; ++ch)
          for (Index a = 0; a < k; ++a)
            for (Index b = 0; b < k; ++b) to(o, (ch * k + a) * k + b) = from(ch, (o * k + k - 1 - a) * k + k - 1 - b);
    }
  }

  // ∂/∂A_S as the adjoint conv of δ: Σ P(D_U) F_{S∖U} (P its patches, gathered for the chunk; F its
  // flipped kernel), stacked, written into the chunk's input columns (for one sample, straight there:
  // its stacked rows are its column, unless a fan writes the components side by side).
  void adjoint_input_delta(const Jet& delta, Jet& delta_in, Index first, Index count) {
    const Index rows = count * g_.pixels();
    const bool stacked = count > 1 || input_fan_ > 0;
    if (stacked) stacked_storage_.resize(rows, delta_in.size() * g_.c);
    fan_products(input_fan_, delta_patch_blocks(0), input_fan_w_, g_.c);
    for (int c = 0; c < delta_in.size(); ++c) {
      if (!delta_in.nz[static_cast<std::size_t>(c)]) continue;
      Buffer& dx = delta_in.c[static_cast<std::size_t>(c)];
      Columns out(stacked ? stacked_storage_.data() + c * rows * g_.c : dx.col(first).data(), rows, g_.c);
      const Run r = input_delta_runs_[c];
      sum_of_terms(delta, flipped_w_, c, lowest_term(c, input_fan_), r, [&] { return delta_patch_blocks(r.top, r.length); },
                   side_w_[c], [&](int u) { return delta_patch_blocks(u); }, Op::none, out);
      if (stacked) unstack_columns(adjoint_, out, nullptr, first, dx);
    }
  }
};

}  // namespace

// conv(OUT, K), then stride=S and pad=P in any order.
std::unique_ptr<Layer> make_conv(const LayerSpec& spec, const Shape& in) {
  const std::string usage = "conv(OUT, K[, stride=S][, pad=P]) with whole OUT, K, S > 0 and P >= 0";
  if (spec.args.size() < 2 || spec.args.size() > 4) spec.refuse(usage);
  ConvGeometry g;
  g.out = spec.whole(spec.args[0], usage);
  g.k = spec.whole(spec.args[1], usage);
  bool stride_seen = false, pad_seen = false;
  for (std::size_t i = 2; i < spec.args.size(); ++i) {
    const std::string& a = spec.args[i];
    if (a.rfind("stride=", 0) == 0 && !stride_seen) {
      g.stride = spec.whole(a.substr(7), usage);
      stride_seen = true;
    } else if (a.rfind("pad=", 0) == 0 && !pad_seen) {
      g.pad = a.substr(4) == "0" ? 0 : spec.whole(a.substr(4), usage);
      pad_seen = true;
    } else {
      spec.refuse(usage);
    }
  }
  if (in.is_vector()) spec.refuse("an image input C x H x W, got a vector of " + in.text());
  g.set_input(in);
  if (g.k > in.height + 2 * g.pad || g.k > in.width + 2 * g.pad)
    spec.refuse("a kernel no larger than the padded input, got K = " + std::to_string(g.k) + " on " + in.text() +
                " with pad " + std::to_string(g.pad));
  return std::make_unique<Conv>(g);
}

}  // namespace eomlab
