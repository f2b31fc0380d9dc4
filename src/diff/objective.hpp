// The loss as the flows see it: value, exact gradient, exact Hessian-vector product and exact
// third-order contraction T[u, v] = ∇³L[u, v] of L(θ) = (1/N) Σ_i ℓ_i(θ) + (λ/2)‖θ‖²
// (weight decay enters g and H, not T).
// Derivatives are sums over samples: an objective holds its rank's shard and sums the shards
// through a Reducer, so every rank of a run gets the full (identical) result.
// Invariant: the numbers do not depend on how the data is sharded beyond rounding.
#pragma once
#include "core/dataset.hpp"
#include "core/reducer.hpp"
#include "core/types.hpp"
#include "model/mlp.hpp"

namespace eomlab {

class Objective {
 public:
  virtual ~Objective() = default;
  virtual Index dimension() const = 0;
  virtual double value(const Vector& theta) = 0;
  // Returns L(θ) and writes ∇L(θ).
  virtual double value_and_gradient(const Vector& theta, Vector& grad) = 0;
  // Writes ∇²L(θ) v.
  virtual void hessian_vector(const Vector& theta, const Vector& v, Vector& hv) = 0;
  // Writes ∇³L(θ)[u, v].
  virtual void third_order(const Vector& theta, const Vector& u, const Vector& v, Vector& out) = 0;
};

class MlpObjective final : public Objective {
 public:
  // `local` is this rank's shard of a data set of `n_total` samples; `reducer` sums over the shards.
  MlpObjective(Mlp model, Dataset local, Index n_total, double weight_decay, const Reducer& reducer);
  Index dimension() const override { return model_.n_params(); }
  double value(const Vector& theta) override;
  double value_and_gradient(const Vector& theta, Vector& grad) override;
  void hessian_vector(const Vector& theta, const Vector& v, Vector& hv) override;
  void third_order(const Vector& theta, const Vector& u, const Vector& v, Vector& out) override;
  const Mlp& model() const { return model_; }

 private:
  Mlp model_;
  Dataset local_;
  double scale_;
  double weight_decay_;
  const Reducer& reducer_;
  Vector packed_;  // gradient plus the loss, reduced in one call
};

// L(θ) = ½ θᵀAθ + (λ/2)‖θ‖² with A symmetric: the closed-form oracle of DESIGN.md §1.4.
class QuadraticObjective final : public Objective {
 public:
  explicit QuadraticObjective(Matrix a, double weight_decay = 0.0);
  Index dimension() const override { return a_.rows(); }
  double value(const Vector& theta) override;
  double value_and_gradient(const Vector& theta, Vector& grad) override;
  void hessian_vector(const Vector& theta, const Vector& v, Vector& hv) override;
  void third_order(const Vector& theta, const Vector& u, const Vector& v, Vector& out) override;

 private:
  Matrix a_;
  double weight_decay_;
};

}  // namespace eomlab
