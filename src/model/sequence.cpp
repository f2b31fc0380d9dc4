#include "model/sequence.hpp"

#include <algorithm>
#include <utility>

#include "core/error.hpp"

namespace eomlab {

namespace {
constexpr double max_params = 4.611686018427387904e18;  // 2^62: sums of two such counts stay within Index
// Values of one sample's output of a layer: far beyond any memory, and sums of what layers hold per sample
// stay within Index for networks of fewer than 2^20 layers (a padding of 3e8 gave 1.4e18 values, and the
// memory estimate wrapped below zero).
constexpr double max_output_values = 1099511627776.0;  // 2^40

void check_output_size(const Shape& s, const std::string& where) {
  const double values = static_cast<double>(s.channels) * static_cast<double>(s.height) * static_cast<double>(s.width);
  if (values > max_output_values)
    throw Error(where + "expected an output of at most 2^40 values per sample, got " + format_number(values) + " (" +
                s.text() + ")");
}
}  // namespace

LayerSequence::LayerSequence(const std::vector<LayerSpec>& specs, const Shape& in) : in_(in) {
  if (specs.empty()) throw Error("expected at least one layer");
  Shape shape = in;
  for (std::size_t k = 0; k < specs.size(); ++k) {
    const std::string where = "layer " + std::to_string(k + 1) + " '" + specs[k].text() + "': ";
    try {
      layers_.push_back(make_layer(specs[k], shape));
    } catch (const LayerError& e) {
      throw Error(where + e.reason());
    } catch (const Error& e) {  // from a layer inside this one
      throw Error(where + e.what());
    }
    shape = layers_.back()->output_shape();
    check_output_size(shape, where);
    const Index added = layers_.back()->n_params();
    if (added < 0 || static_cast<double>(n_params_) + static_cast<double>(added) > max_params)
      throw Error(where + "expected a network of at most 2^62 parameters, got more");
    n_params_ += added;
  }
  values_.resize(layers_.size());
  by_planes_.assign(layers_.size(), 0);
  const auto parametrized = [](const std::unique_ptr<Layer>& layer) { return layer->n_params() > 0; };
  first_parametrized_ = static_cast<std::size_t>(std::find_if(layers_.begin(), layers_.end(), parametrized) - layers_.begin());
}

std::string LayerSequence::text() const {
  std::string out;
  for (const auto& layer : layers_) out += (out.empty() ? "" : ", ") + layer->text();
  return out;
}

bool LayerSequence::couples_samples() const {
  for (const auto& layer : layers_)
    if (layer->couples_samples()) return true;
  return false;
}

Index LayerSequence::activation_size() const {
  Index total = 0;
  for (const auto& layer : layers_) total += layer->activation_size();
  return total;
}

bool LayerSequence::planes_from(std::size_t k) const {
  return k + 2 < layers_.size() && layers_[k]->plane_role() == PlaneRole::source &&
         layers_[k + 1]->plane_role() == PlaneRole::map && layers_[k + 2]->plane_role() == PlaneRole::pool;
}

HeldParameters LayerSequence::held_parameters() const {
  HeldParameters all;
  for (const auto& layer : layers_) {
    const HeldParameters own = layer->held_parameters();
    all.kept += own.kept;
    all.scratch = std::max(all.scratch, own.scratch);
  }
  return all;
}

HeldSize LayerSequence::held_size() const {
  HeldSize held;
  Index largest = 0;
  const auto add = [&](std::size_t k, Index size, bool output_kept) {
    (k < first_parametrized_ ? held.value_only : held.every_component) += size;
    if (output_kept && k >= first_parametrized_) largest = std::max(largest, layers_[k]->n_outputs());
  };
  for (std::size_t k = 0; k < layers_.size(); ++k) {
    if (planes_from(k)) {  // the activation's slope and the pool's output
      const Layer &activation = *layers_[k + 1], &pool = *layers_[k + 2];
      add(k + 1, activation.held_size() - activation.n_outputs(), false);
      add(k + 2, pool.held_size(), true);
      k += 2;
      continue;
    }
    add(k, layers_[k]->held_size(), true);
  }
  held.every_component += 2 * largest;
  return held;
}

void LayerSequence::place(Index offset, const std::string& prefix) {
  int parametrized = 0;
  for (const auto& layer : layers_) {
    if (layer->n_params() == 0) continue;
    layer->place(offset, prefix + std::to_string(parametrized++));
    offset += layer->n_params();
  }
}

std::vector<ParameterBlock> LayerSequence::blocks() const {
  std::vector<ParameterBlock> out;
  for (const auto& layer : layers_)
    for (ParameterBlock& b : layer->blocks()) out.push_back(std::move(b));
  return out;
}

std::vector<ParameterBlock> LayerSequence::scale_invariant_blocks() const {
  std::vector<ParameterBlock> out;
  for (std::size_t k = 0; k < layers_.size(); ++k) {
    for (ParameterBlock& b : layers_[k]->scale_invariant_blocks()) out.push_back(std::move(b));
    if (k + 1 == layers_.size()) break;
    switch (layers_[k + 1]->input_scale_invariance()) {
      case InputScaleInvariance::joint:
        if (auto b = layers_[k]->linear_block()) out.push_back(std::move(*b));
        break;
      case InputScaleInvariance::per_channel:
        for (ParameterBlock& b : layers_[k]->channel_blocks()) out.push_back(std::move(b));
        break;
      case InputScaleInvariance::none:
        break;
    }
  }
  return out;
}

void LayerSequence::initialize(Rng& rng, Vector& theta) const {
  for (const auto& layer : layers_) layer->initialize(rng, theta);
}

namespace {

// An activation then a pooling layer taking a conv's output plane by plane.
class PlaneChain final : public PlaneSink {
 public:
  PlaneChain(const ForwardPass& pass, Layer& activation, Layer& pool, Jet& mapped, Jet& out, Index cols, Scratch& s)
      : pass_(pass), activation_(activation), pool_(pool), mapped_(mapped), out_(out), cols_(cols), scratch_(s) {}
  void plane(Index s, Index channel, const Jet& plane) override {
    activation_.map_plane(pass_, plane, mapped_, s, channel, cols_, scratch_);
    pool_.pool_plane(mapped_, out_, s, channel, cols_);
  }

 private:
  const ForwardPass& pass_;
  Layer &activation_, &pool_;
  Jet &mapped_, &out_;
  Index cols_;
  Scratch& scratch_;
};

}  // namespace

void LayerSequence::forward(const ForwardPass& pass, const Jet& in, Scratch& s) {
  std::fill(by_planes_.begin(), by_planes_.end(), 0);
  for (std::size_t k = 0; k < layers_.size(); ++k) {
    const Jet& x = k == 0 ? in : values_[k - 1];
    if (pass.fuse && planes_from(k)) {
      PlaneChain chain(pass, *layers_[k + 1], *layers_[k + 2], plane_, values_[k + 2], x.cols(), s);
      if (layers_[k]->forward_to_planes(pass, x, chain, s)) {
        values_[k].reset(pass.m);
        values_[k + 1].reset(pass.m);
        by_planes_[k] = 1;
        k += 2;
        continue;
      }
    }
    layers_[k]->forward(pass, x, values_[k], s);
  }
}

void LayerSequence::backward(const BackwardPass& pass, const Jet& in, Jet& delta, bool input_delta, Scratch& s) {
  // Whether the δ at layer j's input is needed: by a layer with parameters below it, or by the caller.
  const auto wanted_at = [&](std::size_t j) { return input_delta || first_parametrized_ < j; };
  for (std::size_t k = layers_.size(); k-- > 0 && wanted_at(k + 1);) {  // layer k's output δ is needed
    const Jet& layer_in = k == 0 ? in : values_[k - 1];
    // Layer k - 1's backward pass, an activation's, done inside layer k's where it can be.
    const Jet* factor = pass.fuse && k >= 1 && wanted_at(k - 1) ? layers_[k - 1]->input_delta_factor() : nullptr;
    // And layer k - 2's below it as well, reading δ as layer k forms it (a conv under avgpool(2)).
    if (factor && k >= 2)
      if (const DeltaPlanes* planes = layers_[k]->delta_planes(delta, *factor)) {
        const bool wanted = wanted_at(k - 2);
        if (layers_[k - 2]->backward_from_planes(pass, k == 2 ? in : values_[k - 3], *planes, wanted ? &spare_ : nullptr, s)) {
          if (wanted) std::swap(delta, spare_);
          k -= 2;
          continue;
        }
      }
    if (k >= 2 && by_planes_[k - 2]) throw Error("layer " + std::to_string(k - 1) + ": its forward pass by planes needs the fused backward pass");
    if (factor && layers_[k]->backward_with_factor(pass, layer_in, delta, *factor, spare_, s)) {
      std::swap(delta, spare_);
      --k;
      continue;
    }
    const bool wanted = wanted_at(k);
    layers_[k]->backward(pass, layer_in, delta, wanted ? &spare_ : nullptr, s);
    if (wanted) std::swap(delta, spare_);
  }
}

}  // namespace eomlab
