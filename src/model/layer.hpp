// The pieces a Model (model/model.hpp) is a sequence of: layers, which map a batch of feature columns
// (features x samples) to another with their own slice of θ, and the loss head at the end.
//
// Derivatives are forward-over-reverse on jets (model/jet.hpp) in the m <= 3 directions of an
// evaluation: forward maps the input's jet to the output's; backward maps the jet of δ = ∂loss/∂output
// to that of ∂loss/∂input and writes the gradient jets of the layer's parameters. A layer keeps what its
// backward pass needs from its last forward pass. Every kind is made by name from a LayerSpec through
// the registry (model/layer_registry.cpp): one file in model/layers/ and one registration line.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/dataset.hpp"
#include "core/error.hpp"
#include "core/reducer.hpp"
#include "core/shape.hpp"
#include "core/rng.hpp"
#include "core/types.hpp"
#include "model/buffer.hpp"
#include "model/jet.hpp"
#include "model/model.hpp"

namespace eomlab {

struct DensePathPlan;

// A layer as DESIGN.md §3.6 writes it: "dense(32, weightnorm=on)" is name "dense" with arguments
// {"32", "weightnorm=on"}.
struct LayerSpec {
  std::string name;
  std::vector<std::string> args;

  std::string text() const;
  // Throws LayerError "layer '<text>': expected <what>".
  [[noreturn]] void refuse(const std::string& what) const;
  // `arg` as a whole number in [1, 2^31 − 1] written in decimal digits, or refuse(usage).
  long whole(const std::string& arg, const std::string& usage) const;
  // `arg` as a finite number written in decimal (no hexadecimal, inf or nan), or refuse(usage).
  double number(const std::string& arg, const std::string& usage) const;
};

// A layer's refusal of its name, arguments or input shape; what() is "layer '<text>': <reason>".
class LayerError : public Error {
 public:
  LayerError(const std::string& text, std::string reason)
      : Error("layer '" + text + "': " + reason), reason_(std::move(reason)) {}
  const std::string& reason() const { return reason_; }

 private:
  std::string reason_;
};

// Temporaries shared by the layers of one model (each layer's own state lives in the layer).
struct Scratch {
  Jet t0, t1, t2, t3, grad_w, grad_b;
  Buffer derivs[max_jet_directions + 2], derivs2[max_jet_directions + 2];
  Eigen::RowVectorXd column_max;
};

// The point and the directions of one evaluation (whole vectors), and the sums over the run's data
// shards for layers whose statistics couple the samples (batchnorm): every rank's model evaluates
// together, also on an empty shard.
struct ForwardPass {
  const Vector& theta;
  const Vector* const* directions;  // m of them
  int m;
  const Reducer& shards;
  bool fuse = true;  // whether a layer may take its fast one-pass forms (false on the model's reference path)
};

// Which scalings of a layer's input leave its output unchanged: none, one factor for the whole input
// (layernorm), or one factor per channel (batchnorm). The linear layer before it is scale-invariant in
// the corresponding blocks.
enum class InputScaleInvariance { none, joint, per_channel };

// Where a backward pass puts the parameters' gradient jets: component top = 2^m - 1 (the m-th
// directional derivative of the gradient) into `out`, and component {direction 1} into `first` if given.
struct BackwardPass {
  int m;
  Vector& out;
  Vector* first;
  const Reducer& shards;  // as in ForwardPass
  bool fuse = true;       // whether LayerSequence may fuse an activation's backward pass into the next layer's

  // The components written, as a jet_matmul `wanted` mask.
  unsigned wanted() const;
  // Writes those components of a gradient jet (rows x cols, row-major at `offset`; zero where the jet is).
  void write(const Jet& gradient, Index offset, Index rows, Index cols) const;
};

// The δ an activation hands to the layer below it, factor ⊙ δ_in of the layer above it, formed on demand
// one (component, sample, channel) plane at a time, with the bits of the whole arrays. A layer that
// copies δ into a layout of its own anyway (conv's stacked chunks) takes the planes straight there, so
// the full-size δ is never written and read back.
class DeltaPlanes {
 public:
  virtual int m() const = 0;
  virtual bool nz(int c) const = 0;  // whether component c is non-zero
  virtual Index cols() const = 0;    // samples
  // Component c of sample s's channel `channel`: the pixels of one channel, written at `plane`.
  virtual void write(int c, Index s, Index channel, double* plane) const = 0;

 protected:
  ~DeltaPlanes() = default;
};

// Forward passes fuse alike: a conv hands its output, while its chunk is in cache, one plane at a time
// (one sample's channel: every jet component as a pixels x 1 column of `plane`; planes in the order of
// the samples, then of the channels, from (0, 0); never for an empty batch) to an activation that maps
// it and to an avgpool(2) that pools the result into its output; neither the conv's nor the
// activation's full-size output is written. The bits are those of the three layers' own forward passes.
// Roles: a conv is the source of the planes, an activation maps them, a pooling layer pools them.
enum class PlaneRole { none, source, map, pool };

class PlaneSink {
 public:
  virtual void plane(Index s, Index channel, const Jet& plane) = 0;

 protected:
  ~PlaneSink() = default;
};

class Layer {
 public:
  virtual ~Layer() = default;
  virtual std::string text() const = 0;
  virtual Shape output_shape() const = 0;
  Index n_outputs() const { return output_shape().size(); }  // features per sample
  // Features per sample the layer keeps between its forward and backward pass (its output, and those of
  // the layers inside it).
  virtual Index activation_size() const { return n_outputs(); }
  // What the memory estimate counts instead (activation_size sets the passes' chunks, and with them the
  // bits): doubles per sample and jet component the layer holds from its forward to its backward pass,
  // its output and what it keeps beside it (an activation's slope, a normalization's centred values).
  virtual Index held_size() const { return n_outputs(); }
  // What it keeps of parameter size beside θ's own jet, for the same estimate (weightnorm: the normalized
  // weights, and the shared scratch of their gradient).
  virtual HeldParameters held_parameters() const { return {}; }
  virtual Index n_params() const { return 0; }
  // Puts the parameters at θ[offset, offset + n_params()); their blocks are named "<name>.W", ...
  virtual void place(Index /*offset*/, const std::string& /*name*/) {}
  virtual std::vector<ParameterBlock> blocks() const { return {}; }
  virtual void initialize(Rng& /*rng*/, Vector& /*theta*/) const {}

  // Blocks on which the layer's output is scale-invariant (weight-normalized rows).
  virtual std::vector<ParameterBlock> scale_invariant_blocks() const { return {}; }
  // All parameters as one block, if the output is linear in them: scaling the block scales the output.
  virtual std::optional<ParameterBlock> linear_block() const { return std::nullopt; }
  // For each output channel, a block whose scaling scales that channel alone and on which the other
  // parameters of the channel have no effect once the channel is normalized (a row of W: its bias gets
  // zero gradient under batchnorm). Empty if the layer is not linear per channel.
  virtual std::vector<ParameterBlock> channel_blocks() const { return {}; }
  virtual InputScaleInvariance input_scale_invariance() const { return InputScaleInvariance::none; }
  // Whether adding one constant to all of a sample's input features leaves the output unchanged (layernorm).
  virtual bool input_shift_invariant() const { return false; }
  // Whether the forward pass sums over samples (every rank of a run must then evaluate together).
  virtual bool couples_samples() const { return false; }
  // Linear functionals of θ along whose directions every output moves by the same amount (for a dense
  // layer: each column sum of W and the sum of b).
  virtual std::vector<ParameterSum> output_shift_components() const { return {}; }
  // Describes the layer to the dense fast path, or rejects it (model/dense_path.hpp).
  virtual void plan_dense_path(DensePathPlan& plan) const;

  virtual void forward(const ForwardPass& pass, const Jet& in, Jet& out, Scratch& s) = 0;
  // `in` is the input of the last forward pass; delta_in is null for the first layer (not needed).
  virtual void backward(const BackwardPass& pass, const Jet& in, const Jet& delta, Jet* delta_in, Scratch& s) = 0;

  // Fusing a layer's backward pass with the activation before it (LayerSequence does it): an activation
  // whose backward pass is δ_in = factor ⊙ δ and nothing else names its factor (a jet of its last forward
  // pass); a layer after it may then write factor ⊙ (its own δ_in) in the same pass over memory, with
  // the bits of the two steps. backward_with_factor returns false, having done nothing, if it cannot.
  virtual const Jet* input_delta_factor() const { return nullptr; }
  virtual bool backward_with_factor(const BackwardPass& /*pass*/, const Jet& /*in*/, const Jet& /*delta*/,
                                    const Jet& /*factor*/, Jet& /*delta_in*/, Scratch& /*s*/) {
    return false;
  }
  // Fusing further, across the activation: the layer above it offers factor ⊙ δ_in as planes (null if
  // it cannot; valid until its next call), and the layer below it runs its backward pass from them
  // (false, having done nothing, if it cannot).
  virtual const DeltaPlanes* delta_planes(const Jet& /*delta*/, const Jet& /*factor*/) { return nullptr; }
  // The forward pass by planes (PlaneSink): how the layer takes its input's planes, if it does (an
  // activation: map_plane, whose `out` is the plane's output, keeping what its backward pass needs for a
  // batch of `cols` samples; a pooling layer: pool_plane, writing into its output `out` for `cols`
  // samples); and a conv's forward pass handing its output to `sink` instead of writing it (false if it
  // cannot).
  virtual PlaneRole plane_role() const { return PlaneRole::none; }
  virtual void map_plane(const ForwardPass& /*pass*/, const Jet& /*in*/, Jet& /*out*/, Index /*s*/, Index /*channel*/,
                         Index /*cols*/, Scratch& /*scratch*/) {}
  virtual void pool_plane(const Jet& /*in*/, Jet& /*out*/, Index /*s*/, Index /*channel*/, Index /*cols*/) {}
  virtual bool forward_to_planes(const ForwardPass& /*pass*/, const Jet& /*in*/, PlaneSink& /*sink*/, Scratch& /*scratch*/) {
    return false;
  }
  virtual bool backward_from_planes(const BackwardPass& /*pass*/, const Jet& /*in*/, const DeltaPlanes& /*planes*/,
                                    Jet* /*delta_in*/, Scratch& /*s*/) {
    return false;
  }
};

// The loss ℓ of the last layer's outputs z, summed over the batch's samples, and δ = ∂Σℓ/∂z as a jet.
class LossHead {
 public:
  virtual ~LossHead() = default;
  virtual std::string text() const = 0;
  // Whether adding one constant to every output leaves ℓ unchanged (softmax).
  virtual bool invariant_to_output_shift() const { return false; }
  virtual void plan_dense_path(DensePathPlan& plan) const;
  virtual double forward(int m, const Jet& z, const Dataset& batch, Jet& delta, Scratch& s) = 0;
};

// The registered layer `spec.name` for inputs of shape `in`; throws Error for an unknown name, or for
// arguments or an input shape the layer refuses.
std::unique_ptr<Layer> make_layer(const LayerSpec& spec, const Shape& in);
std::unique_ptr<LossHead> make_loss_head(const std::string& name);

}  // namespace eomlab
