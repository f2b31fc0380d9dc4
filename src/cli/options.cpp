#include "cli/options.hpp"

#include <boost/program_options.hpp>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.hpp"

namespace po = boost::program_options;

namespace eomlab::cli {
namespace {

// Every config key with its default, in the order of the resolved INI text.
struct KeySpec {
  const char* key;
  const char* default_value;
  const char* help;
};

const std::vector<KeySpec>& config_keys() {
  static const std::vector<KeySpec> keys = {
      {"study.name", "eomlab", "name of the study"},
      {"study.output", "results", "output directory"},
      {"study.seed", "0", "initialisation seeds (list: sweep)"},
      {"study.ranks_per_run", "1", "MPI ranks that share one run"},
      {"data.source", "gaussian_mixture", "gaussian_mixture | teacher | hdf5:PATH"},
      {"data.n_samples", "256", "samples (synthetic sources)"},
      {"data.n_features", "", "features (default: first width of model.layers)"},
      {"data.n_classes", "", "classes or outputs (default: last width of model.layers)"},
      {"data.noise", "0.5", "noise level (synthetic sources)"},
      {"data.seed", "0", "seed of the synthetic data (fixed across the sweep)"},
      {"model.layers", "16,32,32,4", "widths, input first"},
      {"model.activation", "tanh", "tanh | softplus | gelu | relu"},
      {"model.normalize", "none", "none | layer | weight (hidden layers)"},
      {"model.loss", "cross_entropy", "cross_entropy | mse"},
      {"model.weight_decay", "0", "weight decay lambda (list: sweep)"},
      {"model.init", "default", "default | hdf5:PATH"},
      {"optimizer.lr", "0.05", "learning rates (list: sweep)"},
      {"optimizer.steps", "", "GD steps (give steps or horizon)"},
      {"optimizer.horizon", "", "final time t = steps * lr (give steps or horizon)"},
      {"optimizer.record_every", "1", "record every this many GD steps"},
      {"optimizer.divergence_factor", "1e6", "GD has diverged (the run stops) once its loss exceeds this factor of its loss at the start"},
      {"flows.kinds", "gf,eom1", "flows integrated beside GD: gf, eom1, eom2, eom3"},
      {"flows.rtol", "1e-10", "relative tolerance of the flow integrator"},
      {"flows.atol", "1e-12", "absolute tolerance of the flow integrator"},
      {"flows.max_steps", "100000", "integrator steps per flow and run before the flow is marked failed"},
      {"output.theta", "all", "all | none: store full parameter trajectories"},
      {"output.sharpness", "on", "on | off: sharpness λ_max(H) of GD at every record (Lanczos on HVPs)"},
      {"output.checkpoint_every", "0", "checkpoint interval in steps (0: none)"},
      {"output.progress_every", "5", "seconds between a run's progress lines (0: its first and last only)"},
  };
  return keys;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

std::vector<std::string> split_list(const std::string& key, const std::string& value) {
  std::vector<std::string> out;
  std::stringstream ss(value);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = trim(item);
    if (item.empty()) throw_input_error(key, "a comma-separated list without empty items", quoted(value));
    out.push_back(item);
  }
  if (out.empty()) throw_input_error(key, "at least one value", "nothing");
  return out;
}

double parse_double(const std::string& key, const std::string& text) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(v)) throw_input_error(key, "a finite number", quoted(text));
  return v;
}

long long parse_integer(const std::string& key, const std::string& text) {
  std::size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size()) throw_input_error(key, "an integer", quoted(text));
  return v;
}

long long parse_positive_integer(const std::string& key, const std::string& text, long long min = 1) {
  const long long v = parse_integer(key, text);
  if (v < min) throw_input_error(key, "an integer >= " + std::to_string(min), quoted(text));
  return v;
}

template <class Enum>
Enum parse_choice(const std::string& key, const std::string& text, const std::vector<std::pair<std::string, Enum>>& choices) {
  std::string names;
  for (const auto& [name, value] : choices) {
    if (name == text) return value;
    names += (names.empty() ? "" : " | ") + name;
  }
  throw_input_error(key, names, quoted(text));
}

FlowKind parse_flow(const std::string& key, const std::string& text) {
  std::string names = "gf";
  for (int order = 0; order <= max_eom_order; ++order) {
    const FlowKind kind{order};
    if (text == kind.name()) return kind;
    if (order > 0) names += " | " + kind.name();
  }
  throw_input_error(key, names, quoted(text));
}

class KeyValues {
 public:
  explicit KeyValues(const po::variables_map& vm) : vm_(vm) {}
  std::string get(const std::string& key) const {
    return vm_.count(key) ? trim(vm_[key].as<std::string>()) : std::string();
  }

 private:
  const po::variables_map& vm_;
};

StudyConfig build_config(const KeyValues& kv) {
  StudyConfig c;
  c.name = kv.get("study.name");
  if (c.name.empty()) throw_input_error("study.name", "a non-empty name", "nothing");
  c.output = kv.get("study.output");
  if (c.output.empty()) throw_input_error("study.output", "a directory", "nothing");
  c.seeds.clear();
  for (const auto& s : split_list("study.seed", kv.get("study.seed")))
    c.seeds.push_back(static_cast<std::uint64_t>(parse_positive_integer("study.seed", s, 0)));
  c.ranks_per_run = static_cast<int>(parse_positive_integer("study.ranks_per_run", kv.get("study.ranks_per_run")));

  // model
  c.model.layers.clear();
  for (const auto& s : split_list("model.layers", kv.get("model.layers")))
    c.model.layers.push_back(static_cast<Index>(parse_positive_integer("model.layers", s)));
  if (c.model.layers.size() < 2)
    throw_input_error("model.layers", "at least two widths (input and output)", quoted(kv.get("model.layers")));
  c.model.activation = parse_choice<Activation>("model.activation", kv.get("model.activation"),
                                                {{"tanh", Activation::tanh},
                                                 {"softplus", Activation::softplus},
                                                 {"gelu", Activation::gelu},
                                                 {"relu", Activation::relu}});
  c.model.normalize = parse_choice<Normalization>("model.normalize", kv.get("model.normalize"),
                                                  {{"none", Normalization::none},
                                                   {"layer", Normalization::layer},
                                                   {"weight", Normalization::weight}});
  c.model.loss = parse_choice<LossKind>("model.loss", kv.get("model.loss"),
                                        {{"cross_entropy", LossKind::cross_entropy}, {"mse", LossKind::mse}});
  c.model.weight_decay.clear();
  for (const auto& s : split_list("model.weight_decay", kv.get("model.weight_decay"))) {
    const double wd = parse_double("model.weight_decay", s);
    if (wd < 0) throw_input_error("model.weight_decay", "values >= 0", quoted(s));
    c.model.weight_decay.push_back(wd);
  }
  const std::string init = kv.get("model.init");
  if (init.rfind("hdf5:", 0) == 0) {
    c.model.init_path = init.substr(5);
    if (c.model.init_path.empty()) throw_input_error("model.init", "hdf5:PATH with a path", quoted(init));
  } else if (init != "default") {
    throw_input_error("model.init", "default | hdf5:PATH", quoted(init));
  }

  // data
  const std::string source = kv.get("data.source");
  if (source.rfind("hdf5:", 0) == 0) {
    c.data.source = "hdf5";
    c.data.path = source.substr(5);
    if (c.data.path.empty()) throw_input_error("data.source", "hdf5:PATH with a path", quoted(source));
  } else if (source == "gaussian_mixture" || source == "teacher") {
    c.data.source = source;
  } else {
    throw_input_error("data.source", "gaussian_mixture | teacher | hdf5:PATH", quoted(source));
  }
  c.data.n_samples = static_cast<Index>(parse_positive_integer("data.n_samples", kv.get("data.n_samples")));
  const std::string nf = kv.get("data.n_features"), nc = kv.get("data.n_classes");
  c.data.n_features = nf.empty() ? c.model.layers.front() : static_cast<Index>(parse_positive_integer("data.n_features", nf));
  c.data.n_classes = nc.empty() ? c.model.layers.back() : static_cast<Index>(parse_positive_integer("data.n_classes", nc));
  if (c.data.source != "hdf5") {
    if (c.data.n_features != c.model.layers.front())
      throw InputError("model.layers: expected input width " + std::to_string(c.data.n_features) +
                       " (data.n_features), got " + std::to_string(c.model.layers.front()));
    if (c.data.n_classes != c.model.layers.back())
      throw InputError("model.layers: expected output width " + std::to_string(c.data.n_classes) +
                       " (data.n_classes), got " + std::to_string(c.model.layers.back()));
    if (c.model.loss == LossKind::cross_entropy && c.data.n_classes < 2)
      throw_input_error("data.n_classes", "at least 2 classes for cross_entropy", std::to_string(c.data.n_classes));
  }
  c.data.noise = parse_double("data.noise", kv.get("data.noise"));
  if (c.data.noise < 0) throw_input_error("data.noise", "a number >= 0", quoted(kv.get("data.noise")));
  c.data.seed = static_cast<std::uint64_t>(parse_positive_integer("data.seed", kv.get("data.seed"), 0));

  // optimizer
  c.optimizer.lr.clear();
  for (const auto& s : split_list("optimizer.lr", kv.get("optimizer.lr"))) {
    const double lr = parse_double("optimizer.lr", s);
    if (!(lr > 0)) throw_input_error("optimizer.lr", "learning rates > 0", quoted(s));
    c.optimizer.lr.push_back(lr);
  }
  const std::string steps = kv.get("optimizer.steps"), horizon = kv.get("optimizer.horizon");
  if (steps.empty() == horizon.empty())
    throw InputError("optimizer.steps: expected exactly one of optimizer.steps and optimizer.horizon, got " +
                     std::string(steps.empty() ? "neither" : "both"));
  if (!steps.empty()) {
    c.optimizer.steps = static_cast<long>(parse_positive_integer("optimizer.steps", steps));
  } else {
    c.optimizer.horizon = parse_double("optimizer.horizon", horizon);
    if (!(c.optimizer.horizon > 0)) throw_input_error("optimizer.horizon", "a final time > 0", quoted(horizon));
    for (double lr : c.optimizer.lr) {
      const double k = c.optimizer.horizon / lr;
      if (std::llround(k) < 1 || std::abs(k - std::round(k)) > 1e-9 * k)
        throw InputError("optimizer.horizon: expected a whole multiple of every optimizer.lr, got horizon " + horizon +
                         " with lr " + std::to_string(lr));
    }
  }
  c.optimizer.record_every = static_cast<long>(parse_positive_integer("optimizer.record_every", kv.get("optimizer.record_every")));
  c.optimizer.divergence_factor = parse_double("optimizer.divergence_factor", kv.get("optimizer.divergence_factor"));
  if (!(c.optimizer.divergence_factor > 1))
    throw_input_error("optimizer.divergence_factor", "a number > 1", quoted(kv.get("optimizer.divergence_factor")));

  // flows
  c.flows.kinds.clear();
  for (const auto& s : split_list("flows.kinds", kv.get("flows.kinds"))) {
    const FlowKind kind = parse_flow("flows.kinds", s);
    for (FlowKind k : c.flows.kinds)
      if (k == kind) throw_input_error("flows.kinds", "each flow once", quoted(kv.get("flows.kinds")));
    c.flows.kinds.push_back(kind);
  }
  c.flows.rtol = parse_double("flows.rtol", kv.get("flows.rtol"));
  if (!(c.flows.rtol > 0 && c.flows.rtol < 1)) throw_input_error("flows.rtol", "a number in (0, 1)", quoted(kv.get("flows.rtol")));
  c.flows.atol = parse_double("flows.atol", kv.get("flows.atol"));
  if (!(c.flows.atol >= 0)) throw_input_error("flows.atol", "a number >= 0", quoted(kv.get("flows.atol")));

  c.flows.max_steps = static_cast<long>(parse_positive_integer("flows.max_steps", kv.get("flows.max_steps")));

  // output
  c.output_options.store_theta =
      parse_choice<bool>("output.theta", kv.get("output.theta"), {{"all", true}, {"none", false}});
  c.output_options.sharpness =
      parse_choice<bool>("output.sharpness", kv.get("output.sharpness"), {{"on", true}, {"off", false}});
  c.output_options.checkpoint_every =
      static_cast<long>(parse_positive_integer("output.checkpoint_every", kv.get("output.checkpoint_every"), 0));
  c.output_options.progress_every = parse_double("output.progress_every", kv.get("output.progress_every"));
  if (!(c.output_options.progress_every >= 0))
    throw_input_error("output.progress_every", "a number of seconds >= 0", quoted(kv.get("output.progress_every")));

  // The resolved INI text: every key, defaults included.
  std::ostringstream ini;
  std::string section;
  for (const KeySpec& k : config_keys()) {
    const std::string full = k.key;
    const auto dot = full.find('.');
    if (full.substr(0, dot) != section) {
      section = full.substr(0, dot);
      ini << (ini.tellp() > 0 ? "\n" : "") << "[" << section << "]\n";
    }
    const std::string value = kv.get(full);
    if (!value.empty()) ini << full.substr(dot + 1) << " = " << value << "\n";
  }
  c.resolved_text = ini.str();
  return c;
}

}  // namespace

Command parse_command_line(int argc, const char* const argv[]) {
  po::options_description general("Options");
  general.add_options()                                                   //
      ("config", po::value<std::string>(), "study config file (INI)")     //
      ("help", "print this help and exit")                                //
      ("version", "print the version and exit")                           //
      ("print-config", "print the resolved config (defaults included) and exit")  //
      ("dry-run", "print the sweep grid and which ranks run what, then exit")      //
      ("overwrite", "replace existing results in the output directory")                   //
      ("resume", "continue an interrupted study in the same output directory")          //
      ("shard", po::value<std::string>(), "i/n: run only runs i, i+n, i+2n, ... (job arrays)")  //
      ("catalog", "(re)build <output>/sweep.h5 from the run files present, then exit");
  po::options_description keys("Config keys (in the file as [section] key = value, or --section.key=value)");
  for (const KeySpec& k : config_keys()) {
    std::string help = k.help;
    if (*k.default_value) help += std::string(" (default ") + k.default_value + ")";
    keys.add_options()(k.key, po::value<std::string>(), help.c_str());
  }
  po::options_description all;
  all.add(general).add(keys);

  Command cmd;
  std::ostringstream help;
  help << "Usage: eomlab --config FILE.ini [--section.key=value ...]\n"
          "       mpirun -np N eomlab --config FILE.ini\n\n"
       << all;
  cmd.help_text = help.str();

  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).run(), vm);
  } catch (const po::unknown_option& e) {
    throw InputError("command line: unknown option '" + e.get_option_name() + "' (see eomlab --help)");
  } catch (const po::error& e) {
    throw InputError(std::string("command line: ") + e.what());
  }
  if (vm.count("help")) {
    cmd.action = Action::help;
    return cmd;
  }
  if (vm.count("version")) {
    cmd.action = Action::version;
    return cmd;
  }
  if (!vm.count("config")) throw InputError("command line: expected --config FILE.ini (see eomlab --help)");
  const std::string path = vm["config"].as<std::string>();
  std::ifstream file(path);
  if (!file) throw InputError("--config: cannot open file '" + path + "'");
  try {
    po::store(po::parse_config_file(file, keys, false), vm);
  } catch (const po::unknown_option& e) {
    throw InputError(path + ": unknown key '" + e.get_option_name() + "'");
  } catch (const po::multiple_occurrences& e) {
    throw InputError(path + ": key '" + e.get_option_name() + "' given more than once");
  } catch (const po::error& e) {
    throw InputError(path + ": " + e.what());
  }
  // Defaults for keys given nowhere.
  for (const KeySpec& k : config_keys())
    if (!vm.count(k.key) && *k.default_value)
      vm.insert({k.key, po::variable_value(boost::any(std::string(k.default_value)), true)});
  po::notify(vm);

  cmd.config = build_config(KeyValues(vm));
  cmd.overwrite = vm.count("overwrite") > 0;
  cmd.resume = vm.count("resume") > 0;
  if (cmd.overwrite && cmd.resume)
    throw InputError("command line: expected at most one of --resume and --overwrite, got both");
  if (vm.count("shard")) {
    const std::string text = trim(vm["shard"].as<std::string>());
    const auto slash = text.find('/');
    long long i = -1, n = 0;
    if (slash != std::string::npos) {
      try {
        std::size_t used_i = 0, used_n = 0;
        i = std::stoll(text.substr(0, slash), &used_i);
        n = std::stoll(text.substr(slash + 1), &used_n);
        if (used_i != slash || used_n != text.size() - slash - 1) i = -1;
      } catch (const std::exception&) {
        i = -1;
      }
    }
    if (i < 0 || n < 1 || i >= n) throw_input_error("--shard", "i/n with 0 <= i < n", quoted(text));
    cmd.shard = static_cast<int>(i);
    cmd.shards = static_cast<int>(n);
  }
  if (vm.count("print-config")) cmd.action = Action::print_config;
  if (vm.count("dry-run")) cmd.action = Action::dry_run;
  if (vm.count("catalog")) cmd.action = Action::catalog;
  return cmd;
}

}  // namespace eomlab::cli
