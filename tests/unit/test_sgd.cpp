// Issue 14, minibatch SGD (DESIGN.md §1.5): the discrete trajectory against a hand-written recurrence
// over batch losses built independently from the batches' own samples; the batch orders as specified;
// batches split over shards; eom0/eom1's error orders at epoch boundaries (fixed and reshuffled order);
// eom1's field against the m² double sum; its average over all orders against the random-reshuffling
// modified loss of Smith et al. (ICLR 2021); bitwise save/restore mid-epoch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "data/synthetic.hpp"
#include "flow/driver.hpp"
#include "flow/flow.hpp"
#include "flow/method.hpp"
#include "flow/sgd.hpp"
#include "support/mixture.hpp"
#include "support/model.hpp"
#include "support/recording_sink.hpp"
#include "support/slopes.hpp"

using namespace eomlab;

namespace {

const std::vector<Index> widths = {4, 7, 3};

Model tanh_net() { return test::mlp_model(widths, Activation::tanh, LossKind::cross_entropy); }

// The order of the specification, written out: Fisher–Yates on the identity, i = n−1 down to 1,
// j = below(i + 1) from Rng(seed, 0x5347440000000000 + epoch).
std::vector<Index> spec_permutation(std::uint64_t seed, long epoch, Index n) {
  std::vector<Index> p(static_cast<std::size_t>(n));
  std::iota(p.begin(), p.end(), Index{0});
  Rng rng(seed, 0x5347440000000000ULL + static_cast<std::uint64_t>(epoch));
  for (Index i = n - 1; i >= 1; --i) {
    const Index j = static_cast<Index>(rng.below(static_cast<std::uint64_t>(i + 1)));
    std::swap(p[static_cast<std::size_t>(i)], p[static_cast<std::size_t>(j)]);
  }
  return p;
}

// The samples idx of d, in that order.
Dataset columns(const Dataset& d, const std::vector<Index>& idx) {
  Dataset out;
  out.x.resize(d.x.rows(), static_cast<Index>(idx.size()));
  for (std::size_t c = 0; c < idx.size(); ++c) {
    out.x.col(static_cast<Index>(c)) = d.x.col(idx[c]);
    out.labels.push_back(d.labels[static_cast<std::size_t>(idx[c])]);
  }
  return out;
}

std::vector<Index> slice(const std::vector<Index>& p, long j, long b) {
  return {p.begin() + j * b, p.begin() + (j + 1) * b};
}

// The loss over batch idx alone: a ModelObjective of its own samples (mean over them, weight decay λ).
struct BatchLoss {
  WholeVector whole;
  ModelObjective f;
  BatchLoss(const Dataset& d, const std::vector<Index>& idx, double wd)
      : whole(tanh_net().n_params()), f(tanh_net(), columns(d, idx), static_cast<Index>(idx.size()), wd, whole) {}
};

// SGD written out: θ at every epoch boundary, epochs 0..epochs.
std::vector<Vector> hand_sgd(const Dataset& d, double wd, const Vector& theta0, double lr, long b, std::uint64_t seed,
                             bool reshuffle, long epochs) {
  const Index n = d.n_samples();
  std::vector<Vector> out{theta0};
  Vector theta = theta0, g;
  for (long e = 0; e < epochs; ++e) {
    const std::vector<Index> p = spec_permutation(seed, reshuffle ? e : 0, n);
    for (long j = 0; j < n / b; ++j) {
      BatchLoss batch(d, slice(p, j, b), wd);
      batch.f.value_and_gradient(theta, g);
      theta -= lr * g;
    }
    out.push_back(theta);
  }
  return out;
}

DriverSettings sgd_settings(double lr, long b, BatchOrder order, std::uint64_t seed, long steps, long record_every,
                            std::vector<std::string> flows = {}) {
  DriverSettings s;
  s.method = "sgd";
  s.method_settings.batch_size = b;
  s.method_settings.order = order;
  s.seed = seed;
  s.lr = lr;
  s.steps = steps;
  s.record_every = record_every;
  s.flows = std::move(flows);
  s.integrator = {1e-13, 1e-15};
  return s;
}

}  // namespace

TEST(Sgd, PermutationsAreTheSpecifiedFisherYates) {
  for (long e : {0L, 1L, 7L}) {
    const std::vector<Index> p = sgd_permutation(42, e, 50);
    EXPECT_EQ(p, spec_permutation(42, e, 50)) << "epoch " << e;
    std::vector<Index> sorted = p;
    std::sort(sorted.begin(), sorted.end());
    for (Index i = 0; i < 50; ++i) EXPECT_EQ(sorted[static_cast<std::size_t>(i)], i);
  }
  EXPECT_NE(sgd_permutation(42, 0, 50), sgd_permutation(42, 1, 50));
  EXPECT_NE(sgd_permutation(42, 0, 50), sgd_permutation(43, 0, 50));
  // Pinned values: the same numbers on every platform (Rng is portable).
  const std::vector<Index> p = sgd_permutation(1, 0, 8);
  std::printf("sgd_permutation(seed 1, epoch 0, 8) =");
  for (Index i : p) std::printf(" %ld", static_cast<long>(i));
  std::printf("\n");
}

// The driver's sgd at every epoch boundary equals the hand-written recurrence, fixed and reshuffled;
// fixed keeps epoch 0's order (so both agree after one epoch and differ after two).
TEST(Sgd, TrajectoryEqualsTheHandWrittenRecurrence) {
  const Dataset d = test::mixture(24, widths, 5);
  const double wd = 0.01, lr = 0.3;
  const long b = 6, m = 4, epochs = 3;
  const std::uint64_t seed = 11;
  Model model = tanh_net();
  const Vector theta0 = model.initial_parameters(seed);
  const ObservableLayout layout = observable_layout(model, false);
  const WholeVector whole(model.n_params());
  std::vector<std::vector<Vector>> runs;
  for (BatchOrder order : {BatchOrder::fixed, BatchOrder::reshuffle}) {
    ModelObjective objective(tanh_net(), d, d.n_samples(), wd, whole);
    test::RecordingSink sink;
    const RunOutcome outcome = run_synchronized(objective, theta0, sgd_settings(lr, b, order, seed, epochs * m, m),
                                                layout, whole, sink);
    EXPECT_EQ(outcome.status, RunStatus::complete);
    const std::vector<Vector> oracle = hand_sgd(d, wd, theta0, lr, b, seed, order == BatchOrder::reshuffle, epochs);
    ASSERT_EQ(sink.records.size(), static_cast<std::size_t>(epochs + 1));
    std::vector<Vector> thetas;
    for (long e = 0; e <= epochs; ++e) {
      const auto& r = sink.records[static_cast<std::size_t>(e)];
      EXPECT_EQ(r.step, e * m);
      const Vector& theta = r.trajectories[0].theta;
      EXPECT_LE((theta - oracle[static_cast<std::size_t>(e)]).lpNorm<Eigen::Infinity>(), 1e-13) << "epoch " << e;
      // The record's loss is the full-data loss L(θ_k), not a batch's.
      Vector g;
      EXPECT_NEAR(r.trajectories[0].loss, objective.value_and_gradient(theta, g), 1e-15);
      EXPECT_NEAR(r.trajectories[0].grad_norm, g.norm(), 1e-14);
      thetas.push_back(theta);
    }
    runs.push_back(thetas);
  }
  EXPECT_EQ(runs[0][1], runs[1][1]);
  EXPECT_GT((runs[0][2] - runs[1][2]).norm(), 1e-6);
}

// The shards of a run split each batch: the batch's parts on two shards sum to the batch loss built
// from its own samples (gradient and HVP; each shard adds the weight decay once).
TEST(Sgd, BatchRestrictionSplitsOverShards) {
  const Dataset d = test::mixture(24, widths, 6);
  const double wd = 0.02;
  const Index n = d.n_samples();
  const WholeVector whole(tanh_net().n_params());
  ModelObjective s0(tanh_net(), shard(d, 0, 2), n, wd, whole, 0);
  ModelObjective s1(tanh_net(), shard(d, 1, 2), n, wd, whole, n / 2);
  ModelObjective all(tanh_net(), d, n, wd, whole);
  const Vector theta = tanh_net().initial_parameters(3);
  const Vector v = tanh_net().initial_parameters(4);
  const std::vector<Index> p = spec_permutation(9, 0, n);
  for (long j = 0; j < 4; ++j) {
    const std::vector<Index> idx = slice(p, j, 6);
    BatchLoss oracle(d, idx, wd);
    Vector g, g0, g1, h, h0, h1;
    const double loss = oracle.f.value_and_gradient(theta, g);
    oracle.f.hessian_vector(theta, v, h);
    const auto b0 = s0.restricted(idx), b1 = s1.restricted(idx), ball = all.restricted(idx);
    const double l0 = b0->value_and_gradient(theta, g0), l1 = b1->value_and_gradient(theta, g1);
    b0->hessian_vector(theta, v, h0);
    b1->hessian_vector(theta, v, h1);
    const double decay = 0.5 * wd * theta.squaredNorm();
    EXPECT_NEAR(l0 + l1 - decay, loss, 1e-14);
    EXPECT_LE((g0 + g1 - wd * theta - g).lpNorm<Eigen::Infinity>(), 1e-14);
    EXPECT_LE((h0 + h1 - wd * v - h).lpNorm<Eigen::Infinity>(), 1e-13);
    Vector ga, ha;
    EXPECT_NEAR(ball->value_and_gradient(theta, ga), loss, 1e-15);
    ball->hessian_vector(theta, v, ha);
    EXPECT_LE((ga - g).lpNorm<Eigen::Infinity>(), 1e-15);
    EXPECT_LE((ha - h).lpNorm<Eigen::Infinity>(), 1e-14);
  }
  // The forward pass a batch's gradient keeps is not reused for another batch's or the full loss's HVP.
  const auto b0 = all.restricted(slice(p, 0, 6)), b1 = all.restricted(slice(p, 1, 6));
  Vector g, h_fresh, h_after;
  b1->hessian_vector(theta, v, h_fresh);
  all.hessian_vector(theta, v, h_fresh);
  b0->value_and_gradient(theta, g);
  all.hessian_vector(theta, v, h_after);
  EXPECT_EQ(h_after, h_fresh);
}

// The batches of a partition run together on the dense fast path (one pass over the samples, blocks of
// it per batch): the model's block gradients equal each block's own gradient, and its Σ_k H_k v_k the sum
// of the blocks' own HVPs; ModelObjective's partition agrees with the batches run one by one
// (BatchPartition's base) and with the reference path, on the whole data and on two shards whose
// blocks are partly empty, with weight decay.
TEST(Sgd, BatchPartitionRunsTheBatchesTogether) {
  const Dataset d = test::mixture(24, widths, 6);
  const double wd = 0.02;
  const Index n = d.n_samples();
  const Vector theta = tanh_net().initial_parameters(3);
  std::vector<Vector> v;
  for (std::uint64_t k = 0; k < 4; ++k) v.push_back(tanh_net().initial_parameters(20 + k));
  const std::vector<const Vector*> directions = {&v[0], &v[1], &v[2], &v[3]};

  // The model alone: blocks of 5, 7, 0 and 12 samples.
  const Model fast = tanh_net();
  ASSERT_TRUE(fast.evaluates_blocks_together());
  const std::vector<Index> ends = {5, 12, 12, 24};
  std::vector<Vector> g(4);
  std::vector<Vector*> outputs = {&g[0], &g[1], &g[2], &g[3]};
  fast.block_gradients(theta, d, ends, 0.25, outputs, {7, 1});
  Vector sum, own, expected = Vector::Zero(theta.size());
  fast.hessian_vector_sum(theta, directions, d, ends, 0.25, sum, {7, 1});
  for (std::size_t k = 0; k < 4; ++k) {
    const Index begin = k == 0 ? 0 : ends[k - 1];
    std::vector<Index> idx(static_cast<std::size_t>(ends[k] - begin));
    std::iota(idx.begin(), idx.end(), begin);
    Vector gk = Vector::Zero(theta.size());
    if (!idx.empty()) {
      fast.loss_and_gradient(theta, columns(d, idx), 0.25, gk);
      fast.hessian_vector(theta, v[k], columns(d, idx), 0.25, own);
      expected += own;
    }
    EXPECT_LE((g[k] - gk).lpNorm<Eigen::Infinity>(), 1e-15) << "block " << k;
  }
  EXPECT_LE((sum - expected).lpNorm<Eigen::Infinity>(), 1e-14);
  Model reference = tanh_net();
  reference.use_reference_path(true);
  EXPECT_FALSE(reference.evaluates_blocks_together());
  EXPECT_THROW(reference.hessian_vector_sum(theta, directions, d, ends, 0.25, sum), Error);

  // Through the objectives: batches of 6 in the order of the samples, so each shard of 12 holds two of
  // them whole and none of the other two.
  const WholeVector whole(tanh_net().n_params());
  const std::vector<std::vector<Index>> batches = {{0, 1, 2, 3, 4, 5}, {6, 7, 8, 9, 10, 11},
                                                   {12, 13, 14, 15, 16, 17}, {18, 19, 20, 21, 22, 23}};
  ModelObjective all(tanh_net(), d, n, wd, whole);
  ModelObjective s0(tanh_net(), shard(d, 0, 2), n, wd, whole, 0);
  ModelObjective s1(tanh_net(), shard(d, 1, 2), n, wd, whole, n / 2);
  ModelObjective slow(std::move(reference), d, n, wd, whole);
  std::vector<Vector> g_all, g_base, g_slow, g0, g1;
  Vector h_all, h_base, h_slow, h0, h1;
  const auto together = all.partitioned(batches);
  together->gradients(theta, g_all);
  together->hessian_vector_sum(theta, directions, h_all);
  BatchPartition one_by_one(all, batches);
  one_by_one.gradients(theta, g_base);
  one_by_one.hessian_vector_sum(theta, directions, h_base);
  const auto reference_path = slow.partitioned(batches);
  reference_path->gradients(theta, g_slow);
  reference_path->hessian_vector_sum(theta, directions, h_slow);
  const auto p0 = s0.partitioned(batches), p1 = s1.partitioned(batches);
  p0->gradients(theta, g0);
  p1->gradients(theta, g1);
  p0->hessian_vector_sum(theta, directions, h0);
  p1->hessian_vector_sum(theta, directions, h1);
  ASSERT_EQ(g_all.size(), 4u);
  for (std::size_t k = 0; k < 4; ++k) {
    EXPECT_LE((g_all[k] - g_base[k]).lpNorm<Eigen::Infinity>(), 1e-15) << "batch " << k;
    EXPECT_LE((g_all[k] - g_slow[k]).lpNorm<Eigen::Infinity>(), 1e-14) << "batch " << k;
    EXPECT_LE((g0[k] + g1[k] - wd * theta - g_all[k]).lpNorm<Eigen::Infinity>(), 1e-15) << "batch " << k;
  }
  Vector decay = Vector::Zero(theta.size());
  for (const Vector& x : v) decay += wd * x;
  EXPECT_LE((h_all - h_base).lpNorm<Eigen::Infinity>(), 1e-14);
  EXPECT_LE((h_all - h_slow).lpNorm<Eigen::Infinity>(), 1e-14);
  EXPECT_LE((h0 + h1 - decay - h_all).lpNorm<Eigen::Infinity>(), 1e-14);
  EXPECT_GT(h_all.norm(), 0.1);
  std::printf("together vs one by one: g %.1e, Hv sum %.1e; vs the reference path: %.1e, %.1e\n",
              (g_all[3] - g_base[3]).lpNorm<Eigen::Infinity>(), (h_all - h_base).lpNorm<Eigen::Infinity>(),
              (g_all[3] - g_slow[3]).lpNorm<Eigen::Infinity>(), (h_all - h_slow).lpNorm<Eigen::Infinity>());
}

// Reshuffled sgd makes a new partition (and its batch objectives) every epoch: their ids are handed out
// again, so the model's table of kept passes stays small, and a recycled id at the same θ never brings
// back another partition's passes.
TEST(Sgd, PartIdsAreReusedWithoutRecallingAnotherPartsPasses) {
  const Dataset d = test::mixture(24, widths, 6);
  const Index n = d.n_samples();
  const Vector theta = tanh_net().initial_parameters(3);
  std::vector<Vector> v;
  for (std::uint64_t k = 0; k < 4; ++k) v.push_back(tanh_net().initial_parameters(20 + k));
  const std::vector<const Vector*> directions = {&v[0], &v[1], &v[2], &v[3]};
  const std::vector<std::vector<Index>> orders[2] = {
      {{0, 1, 2, 3, 4, 5}, {6, 7, 8, 9, 10, 11}, {12, 13, 14, 15, 16, 17}, {18, 19, 20, 21, 22, 23}},
      {{0, 4, 8, 12, 16, 20}, {1, 5, 9, 13, 17, 21}, {2, 6, 10, 14, 18, 22}, {3, 7, 11, 15, 19, 23}}};
  const WholeVector whole(tanh_net().n_params());
  std::vector<Vector> expected_g[2];
  Vector expected_h[2], expected_batch[2];
  for (int o = 0; o < 2; ++o) {  // each order alone, on an objective of its own
    ModelObjective fresh(tanh_net(), d, n, 0.01, whole);
    const auto p = fresh.partitioned(orders[o]);
    p->hessian_vector_sum(theta, directions, expected_h[o]);
    p->gradients(theta, expected_g[o]);
    p->batch(2).value_and_gradient(theta, expected_batch[o]);
  }
  ModelObjective all(tanh_net(), d, n, 0.01, whole);
  std::vector<Vector> g;
  Vector h, batch_g;
  for (int epoch = 0; epoch < 40; ++epoch) {  // the same θ throughout, the order alternating
    const int o = epoch % 2;
    const auto p = all.partitioned(orders[o]);
    // The HVP first: a pass kept under a recycled id at this θ would be the other order's.
    p->hessian_vector_sum(theta, directions, h);
    p->gradients(theta, g);
    if (epoch % 4 >= 2) p->batch(2).value_and_gradient(theta, batch_g);
    for (std::size_t k = 0; k < 4; ++k) ASSERT_EQ(g[k], expected_g[o][k]) << "epoch " << epoch << ", batch " << k;
    ASSERT_EQ(h, expected_h[o]) << "epoch " << epoch;
    if (epoch % 4 >= 2) {
      ASSERT_EQ(batch_g, expected_batch[o]) << "epoch " << epoch;
    }
  }
  EXPECT_NE(expected_g[0][0], expected_g[1][0]);
  // Alive at once: the partition and its 4 batch objectives (made together); 200 ids without reuse.
  EXPECT_LE(all.largest_part_id(), 5);
}

// A batch or partition destroyed after its objective touches nothing of it (the ids' pool is shared).
TEST(Sgd, APartMayBeDestroyedAfterItsObjective) {
  const Dataset d = test::mixture(24, widths, 6);
  const WholeVector whole(tanh_net().n_params());
  auto objective = std::make_unique<ModelObjective>(tanh_net(), d, d.n_samples(), 0.0, whole);
  objective->restricted({0, 1, 2}).reset();  // its id is free again
  auto batch = objective->restricted({3, 4});  // takes it
  auto partition = objective->partitioned({{0, 1, 2, 3, 4, 5}, {6, 7, 8, 9, 10, 11}, {12, 13, 14, 15, 16, 17}, {18, 19, 20, 21, 22, 23}});
  objective->restricted({5}).reset();  // the free list is full: the next id given back grows it
  objective.reset();
  batch.reset();  // had grown a freed list: "double free detected" (before the pool was shared)
  partition.reset();
  SUCCEED();
}

TEST(Sgd, RefusesABatchSizeThatDoesNotDivideTheDataAndOrdersBeyondOne) {
  const Dataset d = test::mixture(24, widths, 5);
  const WholeVector whole(tanh_net().n_params());
  ModelObjective objective(tanh_net(), d, d.n_samples(), 0.0, whole);
  MethodSettings s;
  s.batch_size = 5;
  try {
    make_method("sgd", {objective, 0.1, s, 1});
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("optimizer.batch_size"), std::string::npos) << e.what();
  }
  s.batch_size = 6;
  const auto method = make_method("sgd", {objective, 0.1, s, 1});
  EXPECT_EQ(method->period(), 4);
  EXPECT_EQ(method->max_model_order(), 1);
  try {
    make_flow("eom2", {objective, *method, 0.1});
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("sgd has no eom2"), std::string::npos) << e.what();
  }
}

// eom1's field for the seed's order equals −ḡ + η F1 with F1 = (1/m) Σ_{i<j} H_j g_i − (m/2) H̄ḡ written
// as the double sum (m² HVPs) over batch losses built from their own samples.
TEST(Sgd, Eom1FieldEqualsTheDoubleSum) {
  const Dataset d = test::mixture(24, widths, 7);
  const double wd = 0.01, lr = 0.05;
  const long b = 6, m = 4;
  const std::uint64_t seed = 3;
  const WholeVector whole(tanh_net().n_params());
  ModelObjective objective(tanh_net(), d, d.n_samples(), wd, whole);
  MethodSettings s;
  s.batch_size = b;
  const auto method = make_method("sgd", {objective, lr, s, seed});
  const auto eom1 = make_flow("eom1", {objective, *method, lr});
  const Vector theta = tanh_net().initial_parameters(8);
  Vector field;
  (*eom1)(theta, field);

  const std::vector<Index> p = spec_permutation(seed, 0, d.n_samples());
  std::vector<std::unique_ptr<BatchLoss>> batches;
  std::vector<Vector> g(static_cast<std::size_t>(m));
  for (long j = 0; j < m; ++j) {
    batches.push_back(std::make_unique<BatchLoss>(d, slice(p, j, b), wd));
    batches.back()->f.value_and_gradient(theta, g[static_cast<std::size_t>(j)]);
  }
  Vector gbar, hbar_gbar, hv, f1 = Vector::Zero(theta.size());
  objective.value_and_gradient(theta, gbar);
  objective.hessian_vector(theta, gbar, hbar_gbar);
  for (long j = 0; j < m; ++j)
    for (long i = 0; i < j; ++i) {
      batches[static_cast<std::size_t>(j)]->f.hessian_vector(theta, g[static_cast<std::size_t>(i)], hv);
      f1 += hv / static_cast<double>(m);
    }
  f1 -= (static_cast<double>(m) / 2) * hbar_gbar;
  const Vector expected = -gbar + lr * f1;
  EXPECT_LE((field - expected).norm(), 1e-12 * expected.norm());
  std::printf("|F1| = %.3e, |field - oracle| = %.3e\n", f1.norm(), (field - expected).norm());
}

// On one rank with no more samples than twice the input width, ModelObjective's partition takes sgd's
// eom1 sum through the data's Gram matrix (the first layer's products as one N × N product). Its field
// equals the batches' gradients and HVPs evaluated one by one (BatchPartition's base, which
// Eom1FieldEqualsTheDoubleSum holds to the double sum), for cross-entropy and mse, tanh and softplus, with
// and without weight decay, m = 2, 4 and 8; across two shards the partition does not take it.
TEST(Sgd, Eom1FieldThroughTheGramMatrixEqualsTheBatchesOneByOne) {
  const std::vector<Index> wide = {16, 9, 5, 3};
  const Index n = 24;
  const double lr = 0.05;
  for (const LossKind loss : {LossKind::cross_entropy, LossKind::mse})
    for (const Activation activation : {Activation::tanh, Activation::softplus})
      for (const double wd : {0.0, 0.01})
        for (const long b : {12L, 6L, 3L}) {
          const Dataset d = test::teacher(n, wide, activation, loss, 5);
          const WholeVector whole(test::mlp_model(wide, activation, loss).n_params());
          ModelObjective objective(test::mlp_model(wide, activation, loss), d, n, wd, whole);
          const Vector theta = test::mlp_model(wide, activation, loss).initial_parameters(9);
          const std::vector<Index> p = spec_permutation(4, 0, n);
          std::vector<std::vector<Index>> batches;
          for (long j = 0; j < n / b; ++j) batches.push_back(slice(p, j, b));
          const auto together = objective.partitioned(batches);
          Vector mean, sum;
          ASSERT_TRUE(together->prefix_direction_sum(theta, mean, sum)) << "b " << b;
          BatchPartition one_by_one(objective, batches);
          EXPECT_FALSE(one_by_one.prefix_direction_sum(theta, mean, sum));
          SgdEom1Field field;
          Vector fast, reference;
          field(*together, lr, theta, fast);
          field(one_by_one, lr, theta, reference);
          EXPECT_LE((fast - reference).norm(), 1e-13 * reference.norm())
              << "loss " << static_cast<int>(loss) << " activation " << static_cast<int>(activation) << " wd " << wd << " b " << b;
          EXPECT_GT((fast + mean).norm(), 1e-3 * mean.norm());  // the η F1 part is not negligible
        }
  // Two shards of the samples: the first layer's Gram matrix would span both; the partition declines.
  const Dataset d = test::mixture(n, wide, 6);
  const WholeVector whole(test::mlp_model(wide, Activation::tanh, LossKind::cross_entropy).n_params());
  ModelObjective half(test::mlp_model(wide, Activation::tanh, LossKind::cross_entropy), shard(d, 0, 2), n, 0.0, whole, 0);
  const auto part = half.partitioned({{0, 1, 2, 3, 4, 5}, {6, 7, 8, 9, 10, 11}, {12, 13, 14, 15, 16, 17}, {18, 19, 20, 21, 22, 23}});
  Vector mean, sum;
  EXPECT_FALSE(part->prefix_direction_sum(
      test::mlp_model(wide, Activation::tanh, LossKind::cross_entropy).initial_parameters(1), mean, sum));
}

// Averaged over all m! orders of the batches, F1 is −(1/(2m)) Σ_j H_j g_j = −∇[(1/(4m)) Σ_j ‖g_j‖²]: the
// modified loss of random reshuffling (Smith, Dherin, Barrett & De, ICLR 2021). The right side from
// each batch's own HVP of its gradient, and by central differences of (1/(4m)) Σ_j ‖g_j‖².
TEST(Sgd, Eom1AveragedOverAllOrdersIsTheRandomReshufflingModifiedLoss) {
  const Dataset d = test::mixture(16, widths, 8);
  const double wd = 0.01;
  const long b = 4, m = 4;
  const WholeVector whole(tanh_net().n_params());
  ModelObjective objective(tanh_net(), d, d.n_samples(), wd, whole);
  const std::vector<Index> p = spec_permutation(5, 0, d.n_samples());
  const Vector theta = tanh_net().initial_parameters(9);

  std::vector<long> order(static_cast<std::size_t>(m));
  std::iota(order.begin(), order.end(), 0L);
  SgdEom1Field field;
  Vector out, gbar, mean = Vector::Zero(theta.size());
  objective.value_and_gradient(theta, gbar);
  long count = 0;
  do {
    std::vector<std::vector<Index>> in_order;
    for (long j : order) in_order.push_back(slice(p, j, b));
    field(*objective.partitioned(in_order), 1.0, theta, out);  // −ḡ + F1
    mean += out + gbar;
    ++count;
  } while (std::next_permutation(order.begin(), order.end()));
  ASSERT_EQ(count, 24);
  mean /= static_cast<double>(count);

  Vector smith = Vector::Zero(theta.size()), g, hg;
  std::vector<std::unique_ptr<BatchLoss>> own;
  for (long j = 0; j < m; ++j) {
    own.push_back(std::make_unique<BatchLoss>(d, slice(p, j, b), wd));
    own.back()->f.value_and_gradient(theta, g);
    own.back()->f.hessian_vector(theta, g, hg);
    smith -= hg / (2.0 * static_cast<double>(m));
  }
  const double rel = (mean - smith).norm() / smith.norm();
  std::printf("|<F1>| = %.6e, relative difference to -(1/2m) sum H_j g_j: %.3e\n", smith.norm(), rel);
  EXPECT_LT(rel, 1e-12);
  // The gradient of −(1/(4m)) Σ_j ‖g_j‖² by central differences (an independent check of the identity).
  const auto modified = [&](const Vector& x) {
    double sum = 0;
    Vector gj;
    for (auto& o : own) {
      o->f.value_and_gradient(x, gj);
      sum += gj.squaredNorm();
    }
    return -sum / (4.0 * static_cast<double>(m));
  };
  Vector fd(theta.size());
  const double h = 1e-5;
  for (Index i = 0; i < theta.size(); ++i) {
    Vector plus = theta, minus = theta;
    plus[i] += h;
    minus[i] -= h;
    fd[i] = (modified(plus) - modified(minus)) / (2 * h);
  }
  EXPECT_LT((fd - smith).norm() / smith.norm(), 1e-7);
}

// At epoch boundaries, at a fixed final time (a whole number of epochs), the distance to SGD of eom0
// falls like lr and of eom1 like lr², and eom1 is closer than gf; with a fixed order and reshuffled
// (where eom1's field changes at every epoch boundary).
TEST(Sgd, ErrorOrdersAtEpochBoundaries) {
  const Dataset d = test::mixture(32, widths, 4);
  const long b = 8, m = 4;
  const double horizon = 0.64;
  for (BatchOrder order : {BatchOrder::fixed, BatchOrder::reshuffle}) {
    const char* name = order == BatchOrder::fixed ? "fixed" : "reshuffle";
    std::vector<double> lrs;
    std::vector<std::vector<double>> distance(3);
    for (double lr : {0.04, 0.02, 0.01, 0.005}) {
      Model model = tanh_net();
      const Vector theta0 = model.initial_parameters(3);
      const ObservableLayout layout = observable_layout(model, false);
      const WholeVector whole(model.n_params());
      ModelObjective objective(tanh_net(), d, d.n_samples(), 0.0, whole);
      const long steps = std::lround(horizon / lr);
      ASSERT_EQ(steps % m, 0);
      test::RecordingSink sink;
      run_synchronized(objective, theta0, sgd_settings(lr, b, order, 2, steps, m, {"gf", "eom0", "eom1"}), layout,
                       whole, sink);
      const auto& last = sink.records.back();
      ASSERT_DOUBLE_EQ(last.time, horizon);
      lrs.push_back(lr);
      for (std::size_t f = 0; f < 3; ++f) distance[f].push_back(last.trajectories[f + 1].distance_to_gd);
    }
    const char* flows[] = {"gf", "eom0", "eom1"};
    for (std::size_t f = 0; f < 3; ++f) {
      const double slope = test::loglog_slope(lrs, distance[f]);
      std::printf("%s, %s: distances %.3e %.3e %.3e %.3e, slope %.3f\n", name, flows[f], distance[f][0], distance[f][1],
                  distance[f][2], distance[f][3], slope);
      RecordProperty(std::string("slope_") + name + "_" + flows[f], std::to_string(slope));
      const double expected = f == 2 ? 2.0 : 1.0;
      if (order == BatchOrder::fixed) {
        EXPECT_NEAR(slope, expected, 0.25) << name << ", " << flows[f];
      } else {
        // Reshuffled, every lr sees other orders and the epochs' local errors add with random signs
        // (√ of the number of epochs ∝ lr^(−1/2) instead of lr^(−1)): slopes lie between P+1 and P+1.5.
        EXPECT_GT(slope, expected - 0.25) << name << ", " << flows[f];
        EXPECT_LT(slope, expected + 0.75) << name << ", " << flows[f];
      }
    }
    for (std::size_t i = 0; i < lrs.size(); ++i) EXPECT_LT(distance[2][i], distance[0][i] / 3) << name << ", lr " << lrs[i];
  }
}

// The method's whole state survives save() and restore() mid-epoch: the continuation has the same bits.
TEST(Sgd, SaveAndRestoreMidEpochContinuesWithTheSameBits) {
  const Dataset d = test::mixture(24, widths, 5);
  const WholeVector whole(tanh_net().n_params());
  ModelObjective objective(tanh_net(), d, d.n_samples(), 0.01, whole);
  MethodSettings s;
  s.batch_size = 6;
  s.order = BatchOrder::reshuffle;
  const auto a = make_method("sgd", {objective, 0.2, s, 4});
  a->start(tanh_net().initial_parameters(1));
  for (int k = 0; k < 7; ++k) a->step();
  (void)a->loss();
  const MethodState saved = a->save();
  const auto b = make_method("sgd", {objective, 0.2, s, 4});
  b->restore(saved);
  EXPECT_EQ(b->evaluations(), a->evaluations());
  for (int k = 0; k < 6; ++k) {
    a->step();
    b->step();
  }
  EXPECT_EQ(a->theta(), b->theta());
  EXPECT_EQ(a->loss(), b->loss());
  EXPECT_EQ(a->evaluations(), b->evaluations());
  // Another seed gives another order: its checkpoint is refused.
  const auto c = make_method("sgd", {objective, 0.2, s, 5});
  EXPECT_THROW(c->restore(saved), Error);
}
