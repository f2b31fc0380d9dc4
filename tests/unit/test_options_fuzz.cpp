// The config parser on thousands of random and truncated inputs: it either accepts the input or
// throws an InputError (exit 2 in the program); nothing else escapes, nothing crashes or hangs.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "cli/options.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"

using namespace eomlab;

namespace {

const std::string valid = R"([study]
name = fuzz
output = /nonexistent/fuzz-output
seed = 1, 2
ranks_per_run = 1
[data]
source = gaussian_mixture
n_samples = 64
noise = 0.3
[model]
layers = 5,8,3
activation = tanh
normalize = layer
loss = cross_entropy
weight_decay = 0, 0.01
[optimizer]
lr = 0.1, 0.05
horizon = 2
record_every = 5
[flows]
kinds = gf, eom1, eom2
rtol = 1e-10
atol = 1e-12
[output]
theta = all
sharpness = on
)";

const char* fragments[] = {"=", "[", "]", ",", "-", "1e308", "nan", "inf", "-0", "0x10", "  ", "\n", "#", ";",
                           "hdf5:", "eom", "gf,gf", ",,", "999999999999999999999", "\t", "\xff\xfe", "\0", "[model]"};

std::string mutate(Rng& rng) {
  std::string s = valid;
  const int edits = 1 + static_cast<int>(rng.below(4));
  for (int e = 0; e < edits; ++e) {
    const std::size_t at = s.empty() ? 0 : rng.below(s.size());
    switch (rng.below(5)) {
      case 0: s.resize(at); break;                                         // truncate
      case 1: s.insert(at, fragments[rng.below(sizeof fragments / sizeof *fragments)]); break;
      case 2: if (!s.empty()) s.erase(at, 1 + rng.below(8)); break;        // delete a few bytes
      case 3: if (!s.empty()) s[at] = static_cast<char>(rng.below(256)); break;  // random byte
      case 4: {                                                            // drop a line
        const auto start = s.rfind('\n', at), end = s.find('\n', at);
        if (start != std::string::npos && end != std::string::npos) s.erase(start, end - start);
        break;
      }
    }
  }
  return s;
}

}  // namespace

TEST(OptionsFuzz, RandomAndTruncatedConfigsGiveAConfigOrAnInputError) {
  Rng rng(2024, rng_stream::test);
  const std::string path = ::testing::TempDir() + "eomlab_fuzz.ini";
  int accepted = 0, refused = 0;
  for (int i = 0; i < 3000; ++i) {
    const std::string text = mutate(rng);
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
    const char* argv[] = {"eomlab", "--config", path.c_str()};
    try {
      const cli::Command c = cli::parse_command_line(3, argv);
      ++accepted;
      // Whatever was accepted satisfies the invariants the rest of the program relies on.
      EXPECT_FALSE(c.config.optimizer.lr.empty());
      for (double lr : c.config.optimizer.lr) EXPECT_GT(lr, 0.0);
      EXPECT_GE(c.config.model.layers.size(), 2u);
      EXPECT_FALSE(expand_grid(c.config).empty());
      for (const RunSpec& r : expand_grid(c.config)) EXPECT_GT(r.steps, 0);
    } catch (const InputError& e) {
      ++refused;
      EXPECT_FALSE(std::string(e.what()).empty());
    } catch (const std::exception& e) {
      ADD_FAILURE() << "case " << i << ": " << e.what() << "\n" << text;
    }
  }
  EXPECT_GT(accepted, 50);
  EXPECT_GT(refused, 1000);
}
