// DESIGN.md §1.3: at a fixed final time the distance between GD and gf shrinks like lr¹ and between
// GD and eom1 like lr², measured on a small tanh network.
#include <gtest/gtest.h>

#include <cmath>

#include "data/synthetic.hpp"
#include "flow/driver.hpp"
#include "support/recording_sink.hpp"

using namespace eomlab;

namespace {

// Least-squares slope of log y against log x.
double loglog_slope(const std::vector<double>& x, const std::vector<double>& y) {
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  const double n = static_cast<double>(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double lx = std::log(x[i]), ly = std::log(y[i]);
    sx += lx;
    sy += ly;
    sxx += lx * lx;
    sxy += lx * ly;
  }
  return (n * sxy - sx * sy) / (n * sxx - sx * sx);
}

}  // namespace

TEST(ErrorOrders, GfIsFirstOrderAndEom1SecondOrderOnATanhNetwork) {
  DataConfig data;
  data.source = "gaussian_mixture";
  data.n_samples = 64;
  data.n_features = 6;
  data.n_classes = 3;
  data.seed = 4;
  ModelConfig model;
  model.layers = {6, 10, 3};
  const Dataset d = make_synthetic(data, model);
  LocalReducer local;
  const double horizon = 0.8;
  std::vector<double> lrs, gf, eom1;
  for (double lr : {0.08, 0.04, 0.02, 0.01}) {
    Mlp mlp(model.layers, Activation::tanh, LossKind::cross_entropy);
    const Vector theta0 = mlp.initial_parameters(3);
    const auto blocks = mlp.blocks();
    MlpObjective objective(std::move(mlp), d, d.n_samples(), 0.0, local);
    DriverSettings s;
    s.lr = lr;
    s.steps = std::lround(horizon / lr);
    s.record_every = s.steps;
    s.flows = {FlowKind{0}, FlowKind{1}};
    s.integrator = {1e-12, 1e-14};
    test::RecordingSink sink;
    run_synchronized(objective, theta0, s, blocks, local, sink);
    const auto& last = sink.records.back();
    ASSERT_DOUBLE_EQ(last.time, horizon);
    lrs.push_back(lr);
    gf.push_back(last.trajectories[1].distance_to_gd);
    eom1.push_back(last.trajectories[2].distance_to_gd);
  }
  const double gf_slope = loglog_slope(lrs, gf), eom1_slope = loglog_slope(lrs, eom1);
  RecordProperty("gf_slope", std::to_string(gf_slope));
  RecordProperty("eom1_slope", std::to_string(eom1_slope));
  std::printf("measured slopes: gf %.3f, eom1 %.3f\n", gf_slope, eom1_slope);
  EXPECT_NEAR(gf_slope, 1.0, 0.2);
  EXPECT_NEAR(eom1_slope, 2.0, 0.2);
  for (std::size_t i = 0; i < lrs.size(); ++i) EXPECT_LT(eom1[i], gf[i]);
}
