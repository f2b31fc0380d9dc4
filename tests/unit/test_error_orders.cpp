// DESIGN.md §1.3: at a fixed final time the distance between GD and gf shrinks like lr¹ and between
// GD and eom1 like lr², measured on a small tanh network.
#include <gtest/gtest.h>

#include <cmath>

#include "data/synthetic.hpp"
#include "flow/driver.hpp"
#include "support/mixture.hpp"
#include "support/recording_sink.hpp"
#include "support/slopes.hpp"
#include "support/model.hpp"

using namespace eomlab;

namespace {

// GD and the flows of `architecture` on a Gaussian mixture of 32 images of `shape` (3 classes), run to
// t = 0.6 at lr 0.04 .. 0.01; returns the log-log slope of each flow's final distance to GD.
std::vector<double> architecture_slopes(const std::string& architecture, const Shape& shape,
                                        const std::vector<std::string>& flows) {
  DataConfig data;
  data.n_samples = 32;
  data.n_features = shape.size();
  data.n_classes = 3;
  data.shape = shape;
  data.seed = 2;
  const Dataset d = make_synthetic(data, ModelConfig{});
  const double horizon = 0.6;
  std::vector<double> lrs;
  std::vector<std::vector<double>> distance(flows.size());
  for (double lr : {0.04, 0.02, 0.01}) {
    Model model = test::architecture_model(architecture, shape, LossKind::cross_entropy);
    const Vector theta0 = model.initial_parameters(3);
    const ObservableLayout layout = observable_layout(model, false);
    const WholeVector local(model.n_params());
    ModelObjective objective(std::move(model), d, d.n_samples(), 0.0, local);
    DriverSettings s;
    s.lr = lr;
    s.steps = std::lround(horizon / lr);
    s.record_every = s.steps;
    s.flows = flows;
    s.integrator = {1e-13, 1e-15};
    test::RecordingSink sink;
    run_synchronized(objective, theta0, s, layout, local, sink);
    lrs.push_back(lr);
    for (std::size_t f = 0; f < flows.size(); ++f) distance[f].push_back(sink.records.back().trajectories[f + 1].distance_to_gd);
  }
  std::vector<double> slopes;
  for (std::size_t f = 0; f < flows.size(); ++f) {
    slopes.push_back(test::loglog_slope(lrs, distance[f]));
    std::printf("%s, %s: distances %.3e %.3e %.3e, slope %.3f\n", architecture.c_str(), flows[f].c_str(), distance[f][0],
                distance[f][1], distance[f][2], slopes.back());
  }
  return slopes;
}

}  // namespace

// Issue 13: GD and the flows of a conv net and of a residual batchnorm net follow the same orders
// (slopes 1, 2, 3 for gf, eom1, eom2 at fixed final time, ± 0.25).
TEST(ErrorOrders, SlopesOneToThreeOnAConvNetAndAResidualBatchnormNet) {
  for (const char* architecture : {"conv(3, 3, pad=1), tanh, avgpool(2), flatten, dense(3)",
                                   "conv(3, 3, pad=1), batchnorm, tanh, residual(conv(3, 3, pad=1), batchnorm, tanh), "
                                   "globalavgpool, dense(3)"}) {
    const std::vector<double> slopes = architecture_slopes(architecture, {2, 6, 6}, {"gf", "eom1", "eom2"});
    for (std::size_t p = 0; p < slopes.size(); ++p)
      EXPECT_NEAR(slopes[p], static_cast<double>(p) + 1.0, 0.25) << architecture << ", order " << p;
  }
}

// DESIGN.md §1.3: at fixed final time the GD distance of eomP shrinks like lr^(P+1).
TEST(ErrorOrders, SlopesOneToFourForGfAndEom1To3OnATanhNetwork) {
  ModelConfig model;
  model.layers = {6, 10, 3};
  const Dataset d = test::mixture(64, model.layers, 4);
  const double horizon = 0.8;
  std::vector<double> lrs;
  std::vector<std::vector<double>> distance(4);
  for (double lr : {0.08, 0.04, 0.02, 0.01}) {
    Model mlp = test::mlp_model(model.layers, Activation::tanh, LossKind::cross_entropy);
    const Vector theta0 = mlp.initial_parameters(3);
    const ObservableLayout layout = observable_layout(mlp, false);
    const WholeVector local(mlp.n_params());
    ModelObjective objective(std::move(mlp), d, d.n_samples(), 0.0, local);
    DriverSettings s;
    s.lr = lr;
    s.steps = std::lround(horizon / lr);
    s.record_every = s.steps;
    s.flows = {"gf", "eom1", "eom2", "eom3"};
    s.integrator = {1e-13, 1e-15};
    test::RecordingSink sink;
    run_synchronized(objective, theta0, s, layout, local, sink);
    const auto& last = sink.records.back();
    ASSERT_DOUBLE_EQ(last.time, horizon);
    lrs.push_back(lr);
    for (int p = 0; p < 4; ++p) distance[static_cast<std::size_t>(p)].push_back(last.trajectories[static_cast<std::size_t>(p + 1)].distance_to_gd);
  }
  for (int p = 0; p < 4; ++p) {
    const auto& dist = distance[static_cast<std::size_t>(p)];
    const double slope = test::loglog_slope(lrs, dist);
    std::printf("order %d: distances %.3e %.3e %.3e %.3e, slope %.3f\n", p, dist[0], dist[1], dist[2], dist[3], slope);
    RecordProperty("slope_order_" + std::to_string(p), std::to_string(slope));
    // Issue 2 asks gf and eom1 within 0.2 of 1 and 2; issue 3 eom2 and eom3 within 0.25 of 3 and 4.
    EXPECT_NEAR(slope, p + 1.0, p < 2 ? 0.2 : 0.25) << "order " << p;
    if (p > 0) {
      for (std::size_t i = 0; i < lrs.size(); ++i) {
        EXPECT_LT(dist[i], distance[static_cast<std::size_t>(p - 1)][i]);
      }
    }
  }
}
