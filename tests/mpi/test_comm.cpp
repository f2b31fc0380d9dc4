// The dist layer and the sharded objective under a real mpirun: collectives are correct and
// identical on every rank, and a derivative summed over data shards equals the one-process value.
#include <gtest/gtest.h>
#include <mpi.h>

#include "core/rng.hpp"
#include "data/synthetic.hpp"
#include "diff/objective.hpp"
#include "dist/comm.hpp"

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
  DataConfig data;
  data.n_samples = 101;
  data.n_features = 8;
  data.n_classes = 3;
  ModelConfig model;
  model.layers = {8, 12, 3};
  const Dataset full = make_synthetic(data, model);
  Mlp mlp(model.layers, Activation::gelu, LossKind::cross_entropy);
  const Vector theta = mlp.initial_parameters(2);
  Rng r(5, rng_stream::test);
  Vector v(theta.size());
  for (Index i = 0; i < v.size(); ++i) v[i] = r.normal();

  LocalReducer local;
  MlpObjective serial(Mlp(model.layers, Activation::gelu, LossKind::cross_entropy), full, full.n_samples(), 0.01, local);
  MlpObjective sharded(std::move(mlp), shard(full, world.rank(), world.size()), full.n_samples(), 0.01, world);
  Vector g1, g2, h1, h2;
  const double l1 = serial.value_and_gradient(theta, g1), l2 = sharded.value_and_gradient(theta, g2);
  serial.hessian_vector(theta, v, h1);
  sharded.hessian_vector(theta, v, h2);
  EXPECT_NEAR(l1, l2, 1e-14 * std::abs(l1));
  EXPECT_LT((g1 - g2).norm(), 1e-13 * g1.norm());
  EXPECT_LT((h1 - h2).norm(), 1e-13 * h1.norm());
  // Every rank holds the same bits after the reduction.
  double mine = g2.sum(), first = mine;
  MPI_Bcast(&first, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  EXPECT_EQ(mine, first);
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
