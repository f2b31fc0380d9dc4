// ProgressPrinter (study/progress.hpp) on a clock the test sets: which lines it prints, and when.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "study/progress.hpp"

namespace eomlab {
namespace {

struct Printer {
  double now = 0;
  std::ostringstream out;
  ProgressPrinter p{true, "[run 1/1 x]", 1.0, [this] { return now; }, &out};

  std::vector<std::string> lines() const {
    std::vector<std::string> all;
    std::istringstream in(out.str());
    for (std::string line; std::getline(in, line);) all.push_back(line);
    return all;
  }
};

TEST(Progress, StepLinesWithTheEtaAreNotStarvedByLinesWithinRecords) {
  // An adversarial review: records took most of the time, so each interval ended inside one; its line reset the
  // one interval, and the step line right after the record was never printed (no ETA in a 55 s study).
  Printer t;
  const std::string flow = "eom1";
  t.p(0, 100, nullptr);
  for (long step = 1; step <= 5; ++step) {
    t.now = 1.5 * static_cast<double>(step) - 0.01;  // inside the record after step - 1, which takes 1.5 s
    const RecordWork work{&flow, 0.5, 1.0};
    t.p(step - 1, 100, &work);
    t.now += 0.01;  // the record ends 0.01 s later: the next step is taken and recorded
    t.p(step, 100, nullptr);
  }
  const std::vector<std::string> lines = t.lines();
  ASSERT_EQ(lines.size(), 11u) << t.out.str();
  EXPECT_EQ(lines[0], "[run 1/1 x] step 0/100 (0%) elapsed 0.0 s");
  EXPECT_EQ(lines[1], "[run 1/1 x] step 0/100 (0%) elapsed 1.5 s, eom1 at t = 0.5 of 1");
  EXPECT_EQ(lines[2], "[run 1/1 x] step 1/100 (1%) elapsed 1.5 s, ETA 148.5 s");
  EXPECT_EQ(lines[10], "[run 1/1 x] step 5/100 (5%) elapsed 7.5 s, ETA 142.5 s");
}

TEST(Progress, EachKindKeepsItsInterval) {
  Printer t;
  const RecordWork sharpness{};
  t.p(0, 10, nullptr);
  t.now = 0.5;
  t.p(1, 10, nullptr);  // within the interval: nothing
  t.p(1, 10, &sharpness);  // the first line within a record: its own interval has not begun
  t.now = 1.2;
  t.p(2, 10, nullptr);
  t.now = 1.4;
  t.p(2, 10, &sharpness);  // 0.9 s after the last line within a record: nothing
  t.now = 1.9;
  t.p(3, 10, nullptr);  // 0.7 s after the last step line: nothing
  t.now = 2.0;
  t.p(10, 10, nullptr);  // the last step always, without an ETA
  const std::vector<std::string> lines = t.lines();
  ASSERT_EQ(lines.size(), 4u) << t.out.str();
  EXPECT_EQ(lines[1], "[run 1/1 x] step 1/10 (10%) elapsed 0.5 s, sharpness");
  EXPECT_EQ(lines[2], "[run 1/1 x] step 2/10 (20%) elapsed 1.2 s, ETA 4.8 s");
  EXPECT_EQ(lines[3], "[run 1/1 x] step 10/10 (100%) elapsed 2.0 s");
}

}  // namespace
}  // namespace eomlab
