// Parsing and validation of the command line and config file (the in-process half; the real
// binary's exit codes are tested in tests/integration).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "cli/options.hpp"
#include "core/error.hpp"

using namespace eomlab;

namespace {

std::string write_config(const std::string& text) {
  static int counter = 0;
  const std::string path = ::testing::TempDir() + "eomlab_options_" + std::to_string(counter++) + ".ini";
  std::ofstream(path) << text;
  return path;
}

cli::Command parse(const std::string& ini, std::vector<std::string> extra = {}) {
  const std::string path = write_config(ini);
  std::vector<std::string> args{"eomlab", "--config", path};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return cli::parse_command_line(static_cast<int>(argv.size()), argv.data());
}

std::string error_of(const std::string& ini, std::vector<std::string> extra = {}) {
  try {
    parse(ini, extra);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

const std::string minimal = "[optimizer]\nsteps = 10\n";

}  // namespace

TEST(Options, DefaultsAndLists) {
  const cli::Command c = parse("[optimizer]\nlr = 0.1, 0.05\nsteps = 10\n[study]\nseed = 1,2,3\n");
  EXPECT_EQ(c.action, cli::Action::run);
  EXPECT_EQ(c.config.optimizer.lr, (std::vector<double>{0.1, 0.05}));
  EXPECT_EQ(c.config.seeds.size(), 3u);
  EXPECT_EQ(c.config.model.layers, (std::vector<Index>{16, 32, 32, 4}));
  EXPECT_EQ(c.config.flows.kinds.size(), 2u);
  EXPECT_EQ(expand_grid(c.config).size(), 6u);
}

TEST(Options, CommandLineOverridesBeatTheFile) {
  const cli::Command c = parse("[optimizer]\nlr = 0.1\nsteps = 10\n", {"--optimizer.lr=0.2", "--model.activation=gelu"});
  EXPECT_EQ(c.config.optimizer.lr, (std::vector<double>{0.2}));
  EXPECT_EQ(c.config.model.activation, Activation::gelu);
}

TEST(Options, ResolvedTextParsesToTheSameConfig) {
  const cli::Command a = parse("[optimizer]\nlr = 0.1\nhorizon = 2\n[model]\nlayers = 4,8,2\n");
  const cli::Command b = parse(a.config.resolved_text);
  EXPECT_EQ(a.config.resolved_text, b.config.resolved_text);
  EXPECT_EQ(b.config.optimizer.horizon, 2.0);
  EXPECT_EQ(expand_grid(b.config)[0].steps, 20);
}

TEST(Options, BadInputNamesTheKey) {
  EXPECT_NE(error_of(minimal + "[model]\nfoo = 1\n").find("model.foo"), std::string::npos);
  EXPECT_NE(error_of(minimal + "[optimizer]\nlr = 0.1x\n").find("optimizer.lr"), std::string::npos);
  EXPECT_NE(error_of("[optimizer]\nlr = 0\nsteps = 10\n").find("optimizer.lr"), std::string::npos);
  EXPECT_NE(error_of("[optimizer]\nlr = -0.1\nsteps = 10\n").find("optimizer.lr"), std::string::npos);
  EXPECT_NE(error_of(minimal + "[model]\nactivation = sigmoid\n").find("model.activation"), std::string::npos);
  EXPECT_NE(error_of(minimal + "[flows]\nkinds = gf, eom9\n").find("flows.kinds"), std::string::npos);
  EXPECT_NE(error_of(minimal + "[flows]\nkinds = gf, eom4\n").find("flows.kinds"), std::string::npos);
  EXPECT_NE(error_of(minimal + "[model]\nnormalize = batch\n").find("model.normalize"), std::string::npos);
  EXPECT_NE(error_of(minimal + "[flows]\nkinds = gf, gf\n").find("flows.kinds"), std::string::npos);
  EXPECT_NE(error_of("[optimizer]\nlr = 0.1\n").find("optimizer.steps"), std::string::npos);
  EXPECT_NE(error_of("[optimizer]\nlr = 0.3\nhorizon = 1\n").find("optimizer.horizon"), std::string::npos);
  EXPECT_NE(error_of(minimal + "[data]\nn_features = 3\n").find("model.layers"), std::string::npos);
  EXPECT_NE(error_of(minimal + "[model]\nlayers = 4\n").find("model.layers"), std::string::npos);
  EXPECT_NE(error_of(minimal + "[study]\nranks_per_run = 0\n").find("study.ranks_per_run"), std::string::npos);
  EXPECT_NE(error_of(minimal, {"--optimizer.bogus=1"}).find("optimizer.bogus"), std::string::npos);
  EXPECT_NE(error_of(minimal + "[optimizer]\nsteps = 5\n").find("more than once"), std::string::npos);
}

TEST(Options, MissingConfigFileNamesIt) {
  const char* argv[] = {"eomlab", "--config", "/nonexistent/study.ini"};
  try {
    cli::parse_command_line(3, argv);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/study.ini"), std::string::npos);
  }
}
