// The memory estimate against the peaks measured by bench/memory.py (README "Memory"): MLP
// 784-1024-256-10, 1024 samples, gf, eom1 and eom2, sharpness on and off, 1 and 2 ranks per run. Those
// runs wrote no checkpoint: they are compared with the estimate but for a checkpoint's copy of the state
// (tests/integration/test_memory.py measures a run that checkpoints).
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "core/memory.hpp"
#include "model/model.hpp"
#include "study/memory_budget.hpp"

using namespace eomlab;

namespace {

double estimate_mib(int ranks_per_run, bool sharpness) {
  StudyConfig c;
  c.model.layers = {784, 1024, 256, 10};
  c.data.n_samples = 1024;
  c.flows.kinds = {"gf", "eom1", "eom2"};
  c.ranks_per_run = ranks_per_run;
  c.output_options.sharpness = sharpness;
  const Index p = 784 * 1024 + 1024 + 1024 * 256 + 256 + 256 * 10 + 10;
  const MemoryEstimate e = estimate_rank_memory(c, p, c.data.n_samples);
  EXPECT_GT(e.checkpoint_bytes, 8.0 * 26 * 3 * static_cast<double>(p) / ranks_per_run);  // three flows' states
  return (e.total() - e.checkpoint_bytes) / (1024.0 * 1024.0);
}

}  // namespace

TEST(MemoryBudget, EstimatesTheMeasuredPeaksWithin15Percent) {
  EXPECT_NEAR(estimate_mib(1, true), 1525, 0.15 * 1525);
  EXPECT_NEAR(estimate_mib(2, true), 837, 0.15 * 837);
  EXPECT_NEAR(estimate_mib(1, false), 1264, 0.15 * 1264);
  EXPECT_NEAR(estimate_mib(2, false), 706, 0.15 * 706);
}

namespace {

// sgd on the MLP of `layers` with batches of `b` and the given flows.
StudyConfig sgd_study(std::vector<Index> layers, long b, std::vector<std::string> flows, int ranks_per_run = 1) {
  StudyConfig c;
  c.model.layers = std::move(layers);
  c.optimizer.method = "sgd";
  c.optimizer.settings.batch_size = b;
  c.flows.kinds = std::move(flows);
  c.ranks_per_run = ranks_per_run;
  return c;
}

// sgd on MLP 784-512-10 with eom1 alone (rtol 1e-6), batches of `b`.
double sgd_estimate_mib(int ranks_per_run, Index n, long b) {
  StudyConfig c = sgd_study({784, 512, 10}, b, {"eom1"}, ranks_per_run);
  c.data.n_samples = n;
  const MemoryEstimate e = estimate_rank_memory(c, 784 * 512 + 512 + 512 * 10 + 10, n);
  return (e.total() - e.checkpoint_bytes) / (1024.0 * 1024.0);  // measured without a checkpoint
}

}  // namespace

// Peaks measured on this build's binary: eom1 keeps an epoch's 128 batch gradients (slices, and whole on
// 2 ranks: 417 and 625 MB), or through the Gram matrix (1 rank, 1024 samples) a 1024 x 1024 mask.
TEST(MemoryBudget, EstimatesSgdsBatchGradientsWithin20Percent) {
  EXPECT_NEAR(sgd_estimate_mib(1, 4096, 32), 993, 0.2 * 993);
  EXPECT_NEAR(sgd_estimate_mib(2, 4096, 32), 933, 0.2 * 933);
  EXPECT_NEAR(sgd_estimate_mib(1, 1024, 16), 334, 0.2 * 334);
}

// sgd's eom0 of a batchnorm net keeps an epoch's batch gradients too (the batches' own statistics: its
// field is their mean). Measured: dense(512), batchnorm, tanh, dense(10) on 4096 samples of 784, batches
// of 32, flows eom0 (rtol 1e-6, sharpness off), one rank: 871 MiB peak (450 with eom0 = gf before).
TEST(MemoryBudget, EstimatesSgdsEom0WithBatchStatistics) {
  StudyConfig c = sgd_study({784, 10}, 32, {"eom0"});
  c.model.architecture = "dense(512), batchnorm, tanh, dense(10)";
  c.data.n_samples = 4096;
  c.output_options.sharpness = false;
  const Model model = make_model(c.model, Shape(784));
  const double mib = estimate_rank_memory(c, model.n_params(), 4096, &model).total() / (1024.0 * 1024.0);
  EXPECT_NEAR(mib, 871, 0.15 * 871);
  c.model.architecture = "dense(512), tanh, dense(10)";  // eom0 is gf: no batch gradients kept
  const Model plain = make_model(c.model, Shape(784));
  EXPECT_EQ(estimate_rank_memory(c, plain.n_params(), 4096, &plain).batch_bytes, 0);
}

TEST(MemoryBudget, SgdBatchGradientsBeyondMemoryAreNamedByBatchSize) {
  StudyConfig c = sgd_study({2000, 2000, 10}, 1, {"gf", "eom1"}, 2);
  const MemoryEstimate e = estimate_rank_memory(c, 2000 * 2000 + 2000 + 2000 * 10 + 10, 8192);
  EXPECT_GT(e.batch_bytes, 1e11);
  const std::string line = memory_problem(c, e, 2);
  EXPECT_EQ(line.rfind("optimizer.batch_size: expected a study that fits in memory, got an estimated", 0), 0u) << line;
  c.flows.kinds = {"gf"};  // without eom1 nothing is kept per batch
  EXPECT_EQ(estimate_rank_memory(c, 2000 * 2000 + 2000 + 2000 * 10 + 10, 8192).batch_bytes, 0);
}

TEST(MemoryBudget, BatchSizeIsNotNamedWhenNoBatchSizeWouldMakeTheStudyFit) {
  // 9 · 10^8 parameters need some 300 GB per rank without any batch gradient: the model is the key to change.
  const StudyConfig c = sgd_study({30000, 30000, 10}, 1, {"gf", "eom1"});
  const MemoryEstimate e = estimate_rank_memory(c, 30000LL * 30000 + 30000 + 30000 * 10 + 10, 4096);
  EXPECT_GT(e.batch_bytes, std::max(e.parameter_bytes, e.sample_bytes));
  const std::string line = memory_problem(c, e, 1);
  EXPECT_EQ(line.rfind("model.layers: expected a study that fits in memory, got an estimated", 0), 0u) << line;
}

TEST(MemoryBudget, AModelFarBeyondMemoryIsNamedByItsKey) {
  StudyConfig c;
  c.model.layers = {100000, 100000, 10};
  const MemoryEstimate e = estimate_rank_memory(c, 100000LL * 100000 + 100000 + 100000 * 10 + 10, 256);
  EXPECT_GT(e.total(), 1e12);
  const std::string line = memory_problem(c, e, 1);
  EXPECT_EQ(line.rfind("model.layers: expected a study that fits in memory, got an estimated", 0), 0u) << line;
}

// Under an address-space limit (ulimit -v) OpenBLAS spun forever on failed allocations (found by an
// adversarial review): a rank that would map more than its limit leaves is refused too, with headroom.
TEST(MemoryBudget, AnAddressSpaceLimitCountsPerProcess) {
  StudyConfig c;
  c.model.layers = {784, 1024, 256, 10};
  const MemoryEstimate e = estimate_rank_memory(c, 784 * 1024 + 1024 + 1024 * 256 + 256 + 256 * 10 + 10, 1024);
  const double mib = 1024.0 * 1024.0, needs = 1.25 * e.total() + 256 * mib;
  EXPECT_EQ(memory_problem(c, e, 4, {1e12, 0, "test"}), "");                // no limit
  EXPECT_EQ(memory_problem(c, e, 4, {1e12, needs + mib, "test"}), "");      // room enough
  const std::string line = memory_problem(c, e, 4, {1e12, needs - mib, "test"});
  EXPECT_EQ(line.rfind("model.layers: expected a study that fits in memory, got an estimated ", 0), 0u) << line;
  EXPECT_NE(line.find(" of address space, "), std::string::npos) << line;
  EXPECT_NE(line.find(" left under its limit (ulimit -v)"), std::string::npos) << line;
  // The node's shortage is said first, for all its ranks.
  EXPECT_NE(memory_problem(c, e, 4, {3 * e.total(), needs - mib, "test"}).find("× 4 rank(s) on this node"), std::string::npos);
}

TEST(MemoryBudget, AParameterCountBeyondIndexIsStillFarBeyondMemory) {
  // 3 · (2^31 - 1)^2 parameters overflow a 64-bit count: the n_params a model reports has wrapped.
  StudyConfig c;
  c.model.layers = {2147483647, 2147483647, 2147483647, 2147483647, 3};
  const MemoryEstimate e = estimate_rank_memory(c, -170603082981LL, 256);
  EXPECT_GT(e.total(), 1e20);
  EXPECT_FALSE(memory_problem(c, e, 1).empty());
}

namespace {

void write(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

}  // namespace

TEST(MemoryBudget, ACgroupLimitOnAnAncestorCountsAndPageCacheIsReclaimable) {
  // A batch job's limit set on the job's cgroup, the process in a step's task cgroup without one (v2).
  const auto root = std::filesystem::temp_directory_path() / ("eomlab_cgroup_" + std::to_string(::getpid()));
  std::filesystem::remove_all(root);
  write(root / "self_cgroup", "0::/job_7/step_0/task_0\n");
  const auto fs = root / "fs";
  write(fs / "job_7/step_0/task_0/memory.max", "max\n");
  write(fs / "job_7/step_0/task_0/memory.current", "1000\n");
  write(fs / "job_7/step_0/memory.max", "max\n");
  write(fs / "job_7/step_0/memory.current", "1000\n");
  write(fs / "job_7/memory.max", "4000000\n");
  write(fs / "job_7/memory.current", "3000000\n");
  write(fs / "job_7/memory.stat", "anon 500000\nfile 2500000\ninactive_file 2000000\nactive_file 500000\n");
  std::string source;
  // 4e6 limit - (3e6 used - 2e6 inactive page cache) = 3e6, below MemAvailable's 1e9.
  EXPECT_EQ(available_memory_bytes_in((root / "self_cgroup").string(), fs.string(), 1000000000, &source), 3000000);
  EXPECT_EQ(source, "the limit of cgroup " + (fs / "job_7").string());
  std::filesystem::remove_all(root);
}
