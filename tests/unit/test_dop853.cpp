// The integrator against closed-form solutions of linear ODEs, at step ends and from dense output.
#include <gtest/gtest.h>

#include <cmath>

#include "flow/dop853.hpp"

using namespace eomlab;

TEST(Dop853, ExponentialDecayAtManyRecordTimes) {
  LocalReducer local;
  long evaluations = 0;
  Dop853 rk([&](const Vector& y, Vector& dy) { ++evaluations; dy = -0.7 * y; }, IntegratorSettings{1e-12, 1e-14}, local, 1);
  Vector y0(1);
  y0 << 2.0;
  rk.start(0.0, y0);
  Vector y;
  for (int k = 1; k <= 100; ++k) {
    const double t = 0.05 * k;
    ASSERT_EQ(rk.advance_to(t, y), Dop853::Status::ok);
    EXPECT_NEAR(y[0], 2.0 * std::exp(-0.7 * t), 1e-11) << "t = " << t;
  }
  // Dense output: far fewer steps than records.
  EXPECT_LT(rk.accepted_steps(), 40);
}

TEST(Dop853, HarmonicOscillatorDenseOutputAndTolerance) {
  LocalReducer local;
  auto field = [](const Vector& y, Vector& dy) {
    dy.resize(2);
    dy << y[1], -y[0];
  };
  double previous_error = 1.0;
  long previous_steps = 0;
  for (double rtol : {1e-6, 1e-9, 1e-12}) {
    Dop853 rk(field, IntegratorSettings{rtol, rtol * 1e-2}, local, 2);
    Vector y0(2), y;
    y0 << 1.0, 0.0;
    rk.start(0.0, y0);
    double max_error = 0;
    for (int k = 1; k <= 200; ++k) {
      const double t = 0.1 * k;
      ASSERT_EQ(rk.advance_to(t, y), Dop853::Status::ok);
      max_error = std::max(max_error, std::hypot(y[0] - std::cos(t), y[1] + std::sin(t)));
    }
    EXPECT_LT(max_error, 1e3 * rtol) << "rtol " << rtol;
    EXPECT_LT(max_error, previous_error);
    EXPECT_GT(rk.accepted_steps(), previous_steps);
    previous_error = max_error;
    previous_steps = rk.accepted_steps();
  }
}

TEST(Dop853, DivergingSolutionIsReportedNotThrown) {
  LocalReducer local;
  Dop853 rk([](const Vector& y, Vector& dy) { dy = y.array().square().matrix(); }, IntegratorSettings{1e-10, 1e-12}, local, 1);
  Vector y0 = Vector::Constant(1, 1.0), y = y0;  // y = 1/(1-t) blows up at t = 1
  rk.start(0.0, y0);
  const Dop853::Status s = rk.advance_to(2.0, y);
  EXPECT_NE(s, Dop853::Status::ok);
  EXPECT_EQ(y[0], 1.0);  // left unchanged on failure
  EXPECT_EQ(rk.advance_to(3.0, y), s);
}

TEST(Dop853, StepLimitStopsAStiffProblem) {
  LocalReducer local;
  IntegratorSettings settings{1e-10, 1e-12, 50};
  Dop853 rk([](const Vector& y, Vector& dy) { dy = -1e6 * y; }, settings, local, 1);
  Vector y0 = Vector::Constant(1, 1.0), y = y0;
  rk.start(0.0, y0);
  EXPECT_EQ(rk.advance_to(1.0, y), Dop853::Status::step_limit);
  EXPECT_EQ(rk.accepted_steps() + rk.rejected_steps(), 50);
}

TEST(Dop853, LastStepLandsOnTheEndTime) {
  LocalReducer local;
  long evaluations = 0;
  Dop853 rk([&](const Vector& y, Vector& dy) { ++evaluations; dy = -0.7 * y; }, IntegratorSettings{1e-10, 1e-12}, local, 1);
  Vector y0 = Vector::Constant(1, 2.0), y;
  rk.start(0.0, y0);
  rk.set_end_time(3.3);
  ASSERT_EQ(rk.advance_to(3.3, y), Dop853::Status::ok);
  EXPECT_EQ(rk.time(), 3.3);  // a step ended there: no dense output needed
  EXPECT_EQ((evaluations - 2) % 12, 0);  // start (f and the initial-step probe) + 12 per step, no extra stages
  EXPECT_NEAR(y[0], 2.0 * std::exp(-0.7 * 3.3), 1e-10);
}

// An adversarial review: with atol = 0 (pure relative control, accepted by the config) or a tiny atol, a
// component starting at 0 made the first step 0 or NaN, and one that stays 0 with a zero field made every
// error norm 0/0: every flow of a batchnorm net (β starts at 0, biases before it stay 0) failed at t = 0
// with step size underflow. Exact solution: y = (t, e^{-t}, 0).
TEST(Dop853, ZeroAbsoluteToleranceWithComponentsAtZero) {
  LocalReducer local;
  auto field = [](const Vector& y, Vector& dy) {
    dy.resize(3);
    dy << 1.0, -y[1], 0.0;
  };
  for (double atol : {0.0, 1e-30, 1e-300}) {
    Dop853 rk(field, IntegratorSettings{1e-10, atol}, local, 3);
    Vector y0(3), y;
    y0 << 0.0, 1.0, 0.0;
    rk.start(0.0, y0);
    for (int k = 1; k <= 20; ++k) {
      const double t = 0.25 * k;
      ASSERT_EQ(rk.advance_to(t, y), Dop853::Status::ok) << "atol " << atol << ", t = " << t;
      EXPECT_NEAR(y[0], t, 1e-9 * t) << "atol " << atol;
      EXPECT_NEAR(y[1], std::exp(-t), 1e-9 * std::exp(-t)) << "atol " << atol;
      EXPECT_EQ(y[2], 0.0);
    }
    EXPECT_LT(rk.accepted_steps(), 120) << "atol " << atol;  // from the smallest step up by ×10 a step
  }
}
