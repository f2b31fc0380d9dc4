// The dist layer and the sharded objective under a real mpirun: collectives are correct and
// identical on every rank, and a derivative summed over data shards equals the one-process value.
#include <gtest/gtest.h>
#include <mpi.h>

#include "data/synthetic.hpp"
#include "diff/objective.hpp"
#include "dist/comm.hpp"
#include "support/mixture.hpp"
#include "support/random_vector.hpp"
#include "support/model.hpp"

using namespace eomlab;

namespace {
dist::Environment* environment = nullptr;
}

TEST(Comm, AllreduceSplitBroadcast) {
  const dist::Comm world = dist::Comm::world();
  ASSERT_GE(world.size(), 2);
  double v[2] = {1.0, static_cast<double>(world.rank())};
  world.sum_in_place(v, 2);
  EXPECT_EQ(v[0], world.size());
  EXPECT_EQ(v[1], world.size() * (world.size() - 1) / 2.0);
  const dist::Comm alone = world.split(world.rank(), 0);
  EXPECT_EQ(alone.size(), 1);
  EXPECT_EQ(alone.sum(3.5), 3.5);
  EXPECT_EQ(world.broadcast(world.rank() == 0 ? "from root" : "ignored"), "from root");
  EXPECT_EQ(world.max(world.rank()), world.size() - 1);
  EXPECT_FALSE(world.all_true(world.rank() == 0));
}

TEST(Comm, ShardedObjectiveEqualsSerial) {
  const dist::Comm world = dist::Comm::world();
  ModelConfig model;
  model.layers = {8, 12, 3};
  const Dataset full = test::mixture(101, model.layers);
  Model mlp = test::mlp_model(model.layers, Activation::gelu, LossKind::cross_entropy);
  const Vector theta = mlp.initial_parameters(2);
  const Vector v = test::random_vector(theta.size(), 5);

  const WholeVector whole(theta.size());
  const dist::SlicedVectors slices(world, theta.size());
  ModelObjective serial(test::mlp_model(model.layers, Activation::gelu, LossKind::cross_entropy), full, full.n_samples(),
                        0.01, whole);
  ModelObjective sharded(std::move(mlp), shard(full, world.rank(), world.size()), full.n_samples(), 0.01, slices);
  const Index b = slices.begin(), n = slices.local_size();
  ASSERT_EQ(sharded.dimension(), n);
  Vector g1, g2, h1, h2, t1, t2;
  const double l1 = serial.value_and_gradient(theta, g1);
  const double l2 = sharded.value_and_gradient(theta.segment(b, n), g2);
  serial.hessian_vector(theta, v, h1);
  sharded.hessian_vector(theta.segment(b, n), v.segment(b, n), h2);
  serial.third_order(theta, v, theta, t1);
  sharded.third_order(theta.segment(b, n), v.segment(b, n), theta.segment(b, n), t2);
  EXPECT_NEAR(l1, l2, 1e-14 * std::abs(l1));
  EXPECT_LT((g1.segment(b, n) - g2).norm(), 1e-13 * g1.norm());
  EXPECT_LT((h1.segment(b, n) - h2).norm(), 1e-13 * h1.norm());
  EXPECT_LT((t1.segment(b, n) - t2).norm(), 1e-13 * t1.norm());
  // The slices tile the vector: gathering them gives every rank the same whole gradient.
  Vector gathered;
  slices.all_gather(g2, gathered);
  EXPECT_LT((gathered - g1).norm(), 1e-13 * g1.norm());
  // An HVP moves v in (all-gather) and Hv out (reduce-scatter): 2P(r-1)/r doubles per rank at most,
  // θ being gathered once per point.
  const std::uint64_t before = slices.bytes_sent();
  sharded.hessian_vector(theta.segment(b, n), v.segment(b, n), h2);
  const double floor = 2.0 * 8 * static_cast<double>(theta.size()) * (world.size() - 1) / world.size();
  EXPECT_LE(static_cast<double>(slices.bytes_sent() - before), floor * 1.01 + 16);
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  dist::Environment env(argc, argv);
  environment = &env;
  // Only rank 0 prints gtest's report.
  if (dist::Comm::world().rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int rc = RUN_ALL_TESTS();
  // Fail everywhere if any rank failed.
  int any = rc;
  MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return any;
}
