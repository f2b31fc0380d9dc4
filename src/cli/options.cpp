#include "cli/options.hpp"

#include <boost/program_options.hpp>
#include <algorithm>
#include <charconv>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "core/error.hpp"
#include "core/files.hpp"
#include "data/images.hpp"
#include "data/synthetic.hpp"
#include "flow/flow.hpp"
#include "flow/method.hpp"
#include "flow/observable.hpp"
#include "model/architecture.hpp"

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
      {"data.source", "gaussian_mixture", "gaussian_mixture | teacher | hdf5:PATH | fashion_mnist | idx:PATH | cifar10:PATH"},
      {"data.n_samples", "", "samples (default 256 of a synthetic source; of an image source the first N of its selection, default all)"},
      {"data.n_features", "", "features (default: first width of model.layers)"},
      {"data.n_classes", "", "classes or outputs (default: last width of model.layers)"},
      {"data.noise", "0.5", "noise level (synthetic sources)"},
      {"data.seed", "0", "seed of the synthetic data (fixed across the sweep)"},
      {"data.shape", "", "C,H,W: shape of a synthetic source's samples (default a vector of data.n_features)"},
      {"data.path", "", "folder of the fashion_mnist files (default /usr/share/datasets/fashion-mnist)"},
      {"data.split", "", "train | test: split of an image source (default train)"},
      {"data.classes", "", "labels an image source keeps, relabelled 0..k-1 in this order (default all, unchanged)"},
      {"data.pixels", "", "standard | unit: an image source's pixels standardised per channel or x/255 (default standard)"},
      {"model.architecture", "", "layers, e.g. conv(32,3,pad=1), tanh, avgpool(2), flatten, dense(10) (instead of model.layers)"},
      {"model.layers", "16,32,32,4", "widths, input first"},
      {"model.activation", "tanh", "tanh | softplus | gelu | relu"},
      {"model.normalize", "none", "none | layer | weight (hidden layers)"},
      {"model.loss", "cross_entropy", "cross_entropy | mse"},
      {"model.weight_decay", "0", "weight decay lambda (list: sweep)"},
      {"model.init", "default", "default | hdf5:PATH"},
      {"optimizer.method", "gd", "the discrete method the flows describe"},
      {"optimizer.momentum", "", "momentum beta"},
      {"optimizer.beta1", "", "decay of the first moment"},
      {"optimizer.beta2", "", "decay of the second moment (rmsprop's alpha)"},
      {"optimizer.eps", "", "eps added to the root of the second moment"},
      {"optimizer.batch_size", "", "samples per minibatch, a divisor of the number of samples"},
      {"optimizer.order", "", "fixed | reshuffle: one permutation of the samples from the seed (cut into consecutive batches), or a new one every epoch"},
      {"optimizer.lr", "0.05", "learning rates (list: sweep)"},
      {"optimizer.steps", "", "GD steps (give steps or horizon)"},
      {"optimizer.horizon", "", "final time t = steps * lr (give steps or horizon)"},
      {"optimizer.record_every", "1", "record every this many GD steps"},
      {"optimizer.divergence_factor", "1e6", "GD has diverged (the run stops) once its loss exceeds this factor of its loss at the start"},
      {"flows.kinds", "gf,eom1", "flows integrated beside the method (list)"},
      {"flows.rtol", "1e-10", "relative tolerance of the flow integrator"},
      {"flows.atol", "1e-12", "absolute tolerance of the flow integrator"},
      {"flows.max_steps", "100000", "integrator steps per flow and run before the flow is marked failed"},
      {"flows.start_correction", "on", "on | off: a method with memory starts its eomP from the corrected point theta0* (off: from theta0)"},
      {"output.theta", "all", "all | none: store full parameter trajectories"},
      {"output.sharpness", "on", "on | off: sharpness λ_max(H) of GD at every record (Lanczos on HVPs)"},
      {"output.rates", "off", "on | off: predicted and measured rates of each block's squared norm at the method's iterates"},
      {"output.observables", "", "further observables by name (list)"},
      {"output.checkpoint_every", "0", "checkpoint interval in steps (0: only on a stop signal)"},
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

bool is_control(unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; }

// `s` with control characters spelled \xNN, so a message about them stays one line.
std::string escaped(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "\\x%02x", c);
    out += is_control(c) ? std::string(hex) : std::string(1, static_cast<char>(c));
  }
  return out;
}

std::vector<std::string> split_list(const std::string& key, const std::string& value) {
  std::vector<std::string> out;
  for (std::size_t begin = 0;;) {
    const std::size_t comma = value.find(',', begin);
    const std::string item = trim(value.substr(begin, comma == std::string::npos ? std::string::npos : comma - begin));
    if (item.empty()) {
      if (value.empty()) throw_input_error(key, "at least one value", "nothing");
      throw_input_error(key, "a comma-separated list without empty items", quoted(value));
    }
    out.push_back(item);
    if (comma == std::string::npos) return out;
    begin = comma + 1;
  }
}

// Refuses a list that names one value twice (each grid point is one run and one file). `format` spells
// equal values alike and distinct ones apart, as format_number does for doubles other than -0.
template <class T, class Format>
void require_distinct(const std::string& key, const std::vector<T>& values, Format format) {
  std::set<std::string> seen;
  for (const T& x : values)
    if (!seen.insert(format(x)).second) throw_input_error(key, "distinct values", format(x) + " twice");
}

std::string integer_text(long long n) { return std::to_string(n); }

// A number below the smallest double (1e-320, 1e-400) is the subnormal or zero it rounds to, as in any
// double arithmetic; one beyond the largest is refused with inf and nan.
double parse_double(const std::string& key, const std::string& text) {
  char* end = nullptr;
  const double v = text.empty() || std::isspace(static_cast<unsigned char>(text[0])) ? 0.0 : std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || text.empty() || !std::isfinite(v))
    throw_input_error(key, "a finite number", quoted(text));
  return v;
}

// Largest widths, sample counts and ranks (sizes are int on the MPI and HDF5 side), and step counts
// (steps are exact in the double t = k * lr up to 2^53).
constexpr long long max_size = std::numeric_limits<int>::max();
constexpr long long max_step_count = 1LL << 53;

long long parse_integer(const std::string& key, const std::string& text, long long min, long long max) {
  const bool plus = text.size() > 1 && text[0] == '+';
  long long v = 0;
  const auto [end, error] = std::from_chars(text.data() + (plus ? 1 : 0), text.data() + text.size(), v);
  if (error == std::errc::invalid_argument || end != text.data() + text.size())
    throw_input_error(key, "an integer", quoted(text));
  if (error == std::errc::result_out_of_range || v < min || v > max)
    throw_input_error(key, "an integer in [" + integer_text(min) + ", " + integer_text(max) + "]", quoted(text));
  return v;
}

template <class Enum>
using Choices = std::vector<std::pair<std::string, Enum>>;

const Choices<Activation> activations{
    {"tanh", Activation::tanh}, {"softplus", Activation::softplus}, {"gelu", Activation::gelu}, {"relu", Activation::relu}};
const Choices<Normalization> normalizations{
    {"none", Normalization::none}, {"layer", Normalization::layer}, {"weight", Normalization::weight}};
const Choices<LossKind> losses{{"cross_entropy", LossKind::cross_entropy}, {"mse", LossKind::mse}};
const Choices<bool> theta_choices{{"all", true}, {"none", false}};
const Choices<bool> switch_choices{{"on", true}, {"off", false}};
const Choices<bool> split_choices{{"train", false}, {"test", true}};
const Choices<Pixels> pixel_choices{{"standard", Pixels::standard}, {"unit", Pixels::unit}};
const Choices<BatchOrder> order_choices{{"fixed", BatchOrder::fixed}, {"reshuffle", BatchOrder::reshuffle}};

// Whether the study's method reads this [optimizer] key ("optimizer.momentum").
bool uses(const StudyConfig& c, const std::string& key) {
  return method_key(c.optimizer.method, key.substr(key.find('.') + 1)) != nullptr;
}

template <class Enum>
Enum parse_choice(const std::string& key, const std::string& text, const Choices<Enum>& choices) {
  std::string names;
  for (const auto& [name, value] : choices) {
    if (name == text) return value;
    names += (names.empty() ? "" : " | ") + name;
  }
  throw_input_error(key, names, quoted(text));
}

template <class Enum>
std::string choice_name(Enum value, const Choices<Enum>& choices) {
  for (const auto& [name, v] : choices)
    if (v == value) return name;
  throw Error("no name for a choice");
}

// A name of `registry` (a method, flow or observable).
template <class Registry>
std::string parse_registered(const std::string& key, const std::string& text, const Registry& registry) {
  if (!registry.contains(text)) throw_input_error(key, "one of " + registry.joined_names(), quoted(text));
  return text;
}

// "none registered" or the names output.observables may give.
std::string further_observables_text() {
  const std::vector<std::string> names = further_observable_names();
  if (names.empty()) return "none registered in this program";
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// A further observable's name. The standard ones are recorded in every run (sharpness as output.sharpness
// says), so naming one here is a mistake, refused with the rest of the config, before anything is written.
std::string parse_further_observable(const std::string& text) {
  const Registry<ObservableEntry>& registry = observable_registry();
  const bool standard = registry.contains(text) && registry.at(text).standard;
  if (!registry.contains(text) || standard)
    throw_input_error("output.observables", "a further observable (" + further_observables_text() + ")",
                      quoted(text) + (standard ? ", a standard observable: runs record it without this key" : ""));
  return text;
}

// "section.key" -> value text, as given (trimmed); a key given nowhere is absent.
using Values = std::map<std::string, std::string>;

class KeyValues {
 public:
  explicit KeyValues(const Values& values) : values_(values) {}
  std::string get(const std::string& key) const {
    const auto it = values_.find(key);
    return it == values_.end() ? std::string() : it->second;
  }
  bool written(const std::string& key) const { return values_.count(key) > 0; }  // even with a blank value

 private:
  const Values& values_;
};

bool is_config_key(const std::string& key) {
  for (const KeySpec& k : config_keys())
    if (key == k.key) return true;
  return false;
}

// The keys of an INI text. Comments are whole lines whose first non-blank character is # or ; (as
// Python's configparser reads study.ini); a '#' elsewhere is part of a value (check_value refuses one
// starting a word). `where` names the text in messages.
Values read_ini(const std::string& text, const std::string& where) {
  Values values;
  std::istringstream in(text);
  std::string line, section;
  for (int number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::string at = where + ": line " + std::to_string(number);
    for (unsigned char c : line)
      if (is_control(c))
        throw_input_error(at, "text without control characters", "byte " + escaped(std::string(1, static_cast<char>(c))));
    line = trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      section = trim(line.substr(1, line.size() - 2));
      continue;
    }
    const auto eq = line.find('=');
    if (eq == std::string::npos) throw_input_error(at, "'key = value', '[section]' or a comment", quoted(line));
    const std::string key = (section.empty() ? "" : section + ".") + trim(line.substr(0, eq));
    if (!is_config_key(key)) throw InputError(where + ": unknown key '" + key + "'");
    if (!values.emplace(key, trim(line.substr(eq + 1))).second)
      throw InputError(where + ": key '" + key + "' given more than once");
  }
  return values;
}

// Adds the default of every key given nowhere.
void add_defaults(Values& values) {
  for (const KeySpec& k : config_keys())
    if (*k.default_value) values.emplace(k.key, k.default_value);
}

template <class T, class Format>
std::string joined(const std::vector<T>& items, Format format, const std::string& separator = ",") {
  std::string s;
  for (const T& x : items) s += (s.empty() ? "" : separator) + format(x);
  return s;
}

// The registered methods that read this [optimizer] key ("optimizer.momentum"), each with its default
// there: "heavy_ball (default 0.9), nesterov (default 0.9)"; "" for other keys.
std::string method_key_readers(const std::string& key) {
  if (key.rfind("optimizer.", 0) != 0) return "";
  const std::string name = key.substr(key.find('.') + 1);
  return joined(methods_reading(name), [&](const std::string& m) {
    const std::string& fallback = method_key(m, name)->fallback;
    return m + (fallback.empty() ? " (required)" : " (default " + fallback + ")");
  }, ", ");
}

// The data sources that name their file or folder in data.source as KIND:PATH.
const std::vector<std::string> sources_with_path{"hdf5", "idx", "cifar10"};

// The keys of other data sources that d's source does not read (a file's data is its own): data.noise
// and data.seed for any file; for an hdf5 file data.n_samples too, and data.n_features and data.n_classes,
// which its /X and /y fix (given beside it they are checked against the network, and not recorded).
std::vector<std::string> keys_not_read_by(const DataConfig& d) {
  std::vector<std::string> keys;
  if (!is_synthetic(d)) keys = {"data.noise", "data.seed"};
  if (d.source == "hdf5") keys.insert(keys.end(), {"data.n_samples", "data.n_features", "data.n_classes"});
  return keys;
}

// data.source as given: the kind, with ":PATH" for a kind that names its file or folder there.
std::string source_text(const DataConfig& d) {
  const auto& kinds = sources_with_path;
  return std::find(kinds.begin(), kinds.end(), d.source) != kinds.end() ? d.source + ":" + d.path : d.source;
}

std::string shape_text(const Shape& s) {
  return s.channels > 0 ? joined(std::vector<Index>{s.channels, s.height, s.width}, integer_text) : "";
}

// Each key's value spelled from its parsed value (lists joined by ",", numbers by format_number,
// choices by name), so equal configs have equal text whatever their spelling; "" leaves a key out.
Values canonical_values(const StudyConfig& c, const KeyValues& kv) {
  const auto given = [&](const std::string& key, long long value) { return kv.get(key).empty() ? "" : integer_text(value); };
  const bool image = is_image_source(c.data.source);
  const bool mlp = c.model.architecture.empty();  // an architecture names its layers' activations too
  Values values{
      {"study.name", c.name},
      {"study.output", c.output},
      {"study.seed", joined(c.seeds, [](std::uint64_t s) { return std::to_string(s); })},
      {"study.ranks_per_run", integer_text(c.ranks_per_run)},
      {"data.source", source_text(c.data)},
      {"data.n_samples", c.data.n_samples > 0 ? integer_text(c.data.n_samples) : ""},
      // A synthetic source's width beside an architecture without data.shape: model.layers' default, which
      // the text leaves out, so it is written here.
      {"data.n_features", is_synthetic(c.data) && !mlp && c.data.shape.channels == 0 ? integer_text(c.data.n_features)
                                                                                     : given("data.n_features", c.data.n_features)},
      {"data.n_classes", given("data.n_classes", c.data.n_classes)},
      {"data.noise", format_number(c.data.noise)},
      {"data.seed", std::to_string(c.data.seed)},
      {"data.shape", shape_text(c.data.shape)},
      {"data.path", c.data.source == "fashion_mnist" && c.data.path != fashion_mnist_folder ? c.data.path : ""},
      {"data.split", image ? choice_name(c.data.test_split, split_choices) : ""},
      {"data.classes", joined(c.data.classes, integer_text)},
      {"data.pixels", image ? choice_name(c.data.pixels, pixel_choices) : ""},
      {"model.architecture", c.model.architecture},
      {"model.layers", mlp ? joined(c.model.layers, integer_text) : ""},
      {"model.activation", mlp ? choice_name(c.model.activation, activations) : ""},
      {"model.normalize", mlp ? choice_name(c.model.normalize, normalizations) : ""},
      {"model.loss", choice_name(c.model.loss, losses)},
      {"model.weight_decay", joined(c.model.weight_decay, format_number)},
      {"model.init", c.model.init_path.empty() ? "default" : "hdf5:" + c.model.init_path},
      {"optimizer.method", c.optimizer.method},
      {"optimizer.momentum", uses(c, "optimizer.momentum") ? format_number(c.optimizer.settings.momentum) : ""},
      {"optimizer.beta1", uses(c, "optimizer.beta1") ? format_number(c.optimizer.settings.beta1) : ""},
      {"optimizer.beta2", uses(c, "optimizer.beta2") ? format_number(c.optimizer.settings.beta2) : ""},
      {"optimizer.eps", uses(c, "optimizer.eps") ? format_number(c.optimizer.settings.eps) : ""},
      {"optimizer.batch_size", uses(c, "optimizer.batch_size") ? integer_text(c.optimizer.settings.batch_size) : ""},
      {"optimizer.order", uses(c, "optimizer.order") ? choice_name(c.optimizer.settings.order, order_choices) : ""},
      {"optimizer.lr", joined(c.optimizer.lr, format_number)},
      {"optimizer.steps", c.optimizer.steps > 0 ? integer_text(c.optimizer.steps) : ""},
      {"optimizer.horizon", c.optimizer.steps > 0 ? "" : format_number(c.optimizer.horizon)},
      {"optimizer.record_every", integer_text(c.optimizer.record_every)},
      {"optimizer.divergence_factor", format_number(c.optimizer.divergence_factor)},
      {"flows.kinds", joined(c.flows.kinds, [](const std::string& k) { return k; })},
      {"flows.rtol", format_number(c.flows.rtol)},
      {"flows.atol", format_number(c.flows.atol)},
      {"flows.max_steps", integer_text(c.flows.max_steps)},
      {"flows.start_correction", choice_name(c.flows.start_correction, switch_choices)},
      {"output.theta", choice_name(c.output_options.store_theta, theta_choices)},
      {"output.sharpness", choice_name(c.output_options.sharpness, switch_choices)},
      {"output.rates", choice_name(c.output_options.rates, switch_choices)},
      {"output.observables", joined(c.output_options.observables, [](const std::string& k) { return k; })},
      {"output.checkpoint_every", integer_text(c.output_options.checkpoint_every)},
      {"output.progress_every", format_number(c.output_options.progress_every)},
  };
  for (const std::string& key : keys_not_read_by(c.data)) values[key] = "";
  return values;
}

// The default text of a key of config_keys().
std::string default_of(const std::string& key) {
  for (const KeySpec& k : config_keys())
    if (k.key == key) return k.default_value;
  throw Error("default_of: no key " + key);
}

// The resolved INI text: every key in the order of config_keys(), defaults included.
std::string resolved_text(const Values& canonical) {
  std::ostringstream ini;
  std::string section;
  for (const KeySpec& k : config_keys()) {
    const std::string full = k.key;
    const auto dot = full.find('.');
    if (full.substr(0, dot) != section) {
      section = full.substr(0, dot);
      ini << (ini.tellp() > 0 ? "\n" : "") << "[" << section << "]\n";
    }
    const std::string& value = canonical.at(full);
    if (!value.empty()) ini << full.substr(dot + 1) << " = " << value << "\n";
  }
  return ini.str();
}

Index parse_size(const std::string& key, const std::string& text) {
  return static_cast<Index>(parse_integer(key, text, 1, max_size));
}

long parse_step_count(const std::string& key, const std::string& text, long long min = 1) {
  return static_cast<long>(parse_integer(key, text, min, max_step_count));
}

std::uint64_t parse_seed(const std::string& key, const std::string& text) {
  return static_cast<std::uint64_t>(parse_integer(key, text, 0, std::numeric_limits<long long>::max()));
}

// "KIND:PATH" -> PATH; anything else is refused as not `expected`.
std::string prefixed_path(const std::string& key, const std::string& text, const std::string& kind,
                          const std::string& expected) {
  if (text.rfind(kind + ":", 0) != 0) throw_input_error(key, expected, quoted(text));
  const std::string path = text.substr(kind.size() + 1);
  if (path.empty()) throw_input_error(key, kind + ":PATH with a path", quoted(text));
  return path;
}

void build_study(StudyConfig& c, const KeyValues& kv) {
  c.name = kv.get("study.name");
  if (c.name.empty()) throw_input_error("study.name", "a non-empty name", "nothing");
  c.output = kv.get("study.output");
  if (c.output.empty()) throw_input_error("study.output", "a directory", "nothing");
  c.seeds.clear();
  for (const auto& s : split_list("study.seed", kv.get("study.seed"))) c.seeds.push_back(parse_seed("study.seed", s));
  require_distinct("study.seed", c.seeds, [](std::uint64_t s) { return std::to_string(s); });
  c.ranks_per_run = static_cast<int>(parse_integer("study.ranks_per_run", kv.get("study.ranks_per_run"), 1, max_size));
}

// The layers of model.architecture respelled ("conv(32, 3, pad=1), tanh"); "" for none. Their arguments
// and shapes are checked when the model is made for the data.
std::string canonical_architecture(const std::string& text) {
  if (text.empty()) return "";
  try {
    std::string out;
    for (const LayerSpec& layer : parse_architecture(text)) out += (out.empty() ? "" : ", ") + layer.text();
    return out;
  } catch (const Error& e) {
    throw InputError(std::string("model.architecture: ") + e.what());
  }
}

void build_model(StudyConfig& c, const KeyValues& kv) {
  c.model.layers.clear();
  for (const auto& s : split_list("model.layers", kv.get("model.layers")))
    c.model.layers.push_back(parse_size("model.layers", s));
  if (c.model.layers.size() < 2)
    throw_input_error("model.layers", "at least two widths (input and output)", quoted(kv.get("model.layers")));
  c.model.architecture = canonical_architecture(kv.get("model.architecture"));
  const std::string default_layers = default_of("model.layers");
  const bool default_widths = joined(c.model.layers, integer_text) == default_layers;
  // A blank architecture alone would be model.layers' default MLP, silently (beside other widths it is their MLP).
  if (kv.written("model.architecture") && c.model.architecture.empty() && default_widths)
    throw_input_error("model.architecture", "at least one layer (leave the key out for model.layers' MLP)", "nothing");
  if (!c.model.architecture.empty() && !default_widths)
    throw_input_error("model.layers",
                      "no model.layers beside model.architecture (it names every layer), or its default " + default_layers,
                      quoted(kv.get("model.layers")));
  c.model.activation = parse_choice("model.activation", kv.get("model.activation"), activations);
  c.model.normalize = parse_choice("model.normalize", kv.get("model.normalize"), normalizations);
  // The MLP's activation and normalization; an architecture names its own layers. (Their defaults stay
  // allowed: a resolved config spells every key.)
  if (!c.model.architecture.empty())
    for (const char* key : {"model.activation", "model.normalize"})
      if (const std::string plain = default_of(key); kv.get(key) != plain)
        throw_input_error(key, "a key of model.layers only (model.architecture names its layers), or " + plain,
                          quoted(kv.get(key)));
  c.model.loss = parse_choice("model.loss", kv.get("model.loss"), losses);
  c.model.weight_decay.clear();
  for (const auto& s : split_list("model.weight_decay", kv.get("model.weight_decay"))) {
    const double wd = parse_double("model.weight_decay", s);
    if (wd < 0) throw_input_error("model.weight_decay", "values >= 0", quoted(s));
    c.model.weight_decay.push_back(wd + 0.0);  // -0 is 0
  }
  require_distinct("model.weight_decay", c.model.weight_decay, format_number);
  const std::string init = kv.get("model.init");
  c.model.init_path = init == "default" ? "" : prefixed_path("model.init", init, "hdf5", "default | hdf5:PATH");
}

const char* const source_choices = "gaussian_mixture | teacher | hdf5:PATH | fashion_mnist | idx:PATH | cifar10:PATH";

void parse_source(DataConfig& d, const std::string& source) {
  d.source = source;
  if (source == "gaussian_mixture" || source == "teacher" || source == "fashion_mnist") return;
  for (const std::string& kind : sources_with_path)
    if (source.rfind(kind + ":", 0) == 0) {
      d.source = kind;
      d.path = prefixed_path("data.source", source, kind, source_choices);
      return;
    }
  throw_input_error("data.source", source_choices, quoted(source));
}

// data.shape = C,H,W (synthetic sources only); it fixes data.n_features unless that is given too and agrees.
void build_shape(DataConfig& d, const KeyValues& kv) {
  const std::string text = kv.get("data.shape");
  if (text.empty()) return;
  if (!is_synthetic(d))
    throw_input_error("data.shape", "a shape only for a synthetic source (gaussian_mixture, teacher)",
                      "data.source " + quoted(kv.get("data.source")));
  const auto items = split_list("data.shape", text);
  if (items.size() != 3) throw_input_error("data.shape", "C,H,W (three sizes)", quoted(text));
  double size = 1;
  for (const auto& item : items) size *= static_cast<double>(parse_size("data.shape", item));
  if (size > static_cast<double>(max_size))
    throw_input_error("data.shape", "at most " + integer_text(max_size) + " features (C·H·W)", quoted(text));
  d.shape = Shape(parse_size("data.shape", items[0]), parse_size("data.shape", items[1]), parse_size("data.shape", items[2]));
  const std::string nf = kv.get("data.n_features");
  if (!nf.empty() && parse_size("data.n_features", nf) != d.shape.size())
    throw_input_error("data.shape", "C·H·W = data.n_features " + nf,
                      quoted(text) + " (" + integer_text(d.shape.size()) + " features)");
}

// The keys of an image source (data.path, data.split, data.classes, data.pixels); refused with other sources.
void build_image_selection(DataConfig& d, const KeyValues& kv) {
  if (!is_image_source(d.source)) {
    for (const char* key : {"data.path", "data.split", "data.classes", "data.pixels"})
      if (!kv.get(key).empty())
        throw_input_error(key, "a key of an image source (fashion_mnist, idx:PATH, cifar10:PATH)",
                          "data.source " + quoted(kv.get("data.source")));
    return;
  }
  const std::string path = kv.get("data.path");
  if (d.source == "fashion_mnist") d.path = path.empty() ? fashion_mnist_folder : path;
  else if (!path.empty())
    throw_input_error("data.path", "a folder only for fashion_mnist (idx:PATH and cifar10:PATH name theirs)", quoted(path));
  const std::string split = kv.get("data.split"), pixels = kv.get("data.pixels");
  d.test_split = parse_choice("data.split", split.empty() ? "train" : split, split_choices);
  d.pixels = parse_choice("data.pixels", pixels.empty() ? "standard" : pixels, pixel_choices);
  if (!kv.get("data.classes").empty())
    for (const auto& s : split_list("data.classes", kv.get("data.classes")))
      d.classes.push_back(parse_integer("data.classes", s, 0, max_size));
  require_distinct("data.classes", d.classes, [](std::int64_t k) { return integer_text(k); });
}

void build_data(StudyConfig& c, const KeyValues& kv) {
  parse_source(c.data, kv.get("data.source"));
  const std::string n = kv.get("data.n_samples");
  constexpr Index samples_by_default = 256;  // of a synthetic source (an hdf5 file's are its /X; images: 0, all)
  c.data.n_samples = !n.empty() ? parse_size("data.n_samples", n) : is_image_source(c.data.source) ? 0 : samples_by_default;
  build_shape(c.data, kv);
  build_image_selection(c.data, kv);
  const std::string nf = kv.get("data.n_features"), nc = kv.get("data.n_classes");
  if (is_image_source(c.data.source))
    for (const char* key : {"data.n_features", "data.n_classes"})
      if (!kv.get(key).empty())
        throw_input_error(key, "a key of a synthetic or hdf5 source (an image source's files fix it)",
                          "data.source " + quoted(kv.get("data.source")));
  const bool mlp = c.model.architecture.empty();
  // Beside a network of model.architecture, a data file's widths are its own (0: not given; checked when read).
  const bool file_widths = c.data.source == "hdf5" && !mlp;
  c.data.n_features = !nf.empty()                  ? parse_size("data.n_features", nf)
                      : c.data.shape.channels > 0 ? c.data.shape.size()
                      : file_widths               ? 0
                                                  : c.model.layers.front();
  c.data.n_classes = !nc.empty() ? parse_size("data.n_classes", nc) : mlp ? c.model.layers.back() : 0;
  if ((is_synthetic(c.data) || c.data.source == "hdf5") && mlp) {
    if (c.data.n_features != c.model.layers.front())
      throw InputError("model.layers: expected input width " + std::to_string(c.data.n_features) +
                       (c.data.shape.channels > 0 ? " (data.shape " + c.data.shape.text() + ")" : " (data.n_features)") +
                       ", got " + std::to_string(c.model.layers.front()));
    if (c.data.n_classes != c.model.layers.back())
      throw InputError("model.layers: expected output width " + std::to_string(c.data.n_classes) +
                       " (data.n_classes), got " + std::to_string(c.model.layers.back()));
    if (is_synthetic(c.data) && c.model.loss == LossKind::cross_entropy && c.data.n_classes < 2) {
      if (nc.empty())  // the classes are model.layers' output width (the Python API's Model(layers=...) too)
        throw_input_error("model.layers", "an output width of at least 2 for cross_entropy (one per class)",
                          std::to_string(c.data.n_classes));
      throw_input_error("data.n_classes", "at least 2 classes for cross_entropy", std::to_string(c.data.n_classes));
    }
  }
  c.data.noise = parse_double("data.noise", kv.get("data.noise"));
  if (c.data.noise < 0) throw_input_error("data.noise", "a number >= 0", quoted(kv.get("data.noise")));
  c.data.seed = parse_seed("data.seed", kv.get("data.seed"));
  // A synthetic source's keys; a file's data would silently ignore them. (Their defaults stay allowed: the
  // resolved config of an eomlab before de9ac9c spelled them.)
  if (!is_synthetic(c.data))
    for (const auto& [key, kept] : {std::pair{"data.noise", c.data.noise == parse_double("data.noise", default_of("data.noise"))},
                                    std::pair{"data.seed", c.data.seed == parse_seed("data.seed", default_of("data.seed"))}})
      if (!kept)
        throw_input_error(key, "a key of a synthetic source (gaussian_mixture, teacher), or its default " + default_of(key),
                          quoted(kv.get(key)) + " with data.source " + quoted(kv.get("data.source")));
  // An hdf5 file's /X is the data set, all of it: a sample count of it would silently be another's.
  if (c.data.source == "hdf5" && c.data.n_samples != samples_by_default)
    throw_input_error("data.n_samples", "a key of a synthetic or image source (an hdf5 file's /X holds its samples), or its default " +
                                            std::to_string(samples_by_default),
                      quoted(kv.get("data.n_samples")) + " with data.source " + quoted(kv.get("data.source")));
}

// A hyperparameter in [0, 1) (momentum, betas).
double parse_unit_interval(const std::string& key, const std::string& text) {
  const double x = parse_double(key, text);
  if (!(x >= 0 && x < 1)) throw_input_error(key, "a number in [0, 1)", quoted(text));
  return x;
}

// The hyperparameters of the chosen method (DESIGN.md §3.7); a key of another method is refused.
void build_method_settings(StudyConfig& c, const KeyValues& kv) {
  for (const std::string& name : method_setting_keys)
    if (const std::string key = "optimizer." + name; !kv.get(key).empty() && !uses(c, key))
      throw_input_error(key, "a key of " + joined(methods_reading(name), [](const std::string& m) { return m; }, ", ") + " only",
                        "optimizer.method " + quoted(c.optimizer.method));
  MethodSettings& m = c.optimizer.settings;
  // The method's value of a key it reads: the config's, else the method's default; none if it reads none.
  const auto given = [&](const char* name) -> std::optional<std::string> {
    const MethodKey* k = method_key(c.optimizer.method, name);
    if (!k) return std::nullopt;
    const std::string key = std::string("optimizer.") + name, v = kv.get(key);
    if (v.empty() && k->fallback.empty())
      throw_input_error(key, "a " + std::string(name) + " for method " + c.optimizer.method, "nothing");
    return v.empty() ? k->fallback : v;
  };
  if (const auto v = given("momentum")) m.momentum = parse_unit_interval("optimizer.momentum", *v);
  if (const auto v = given("beta1")) m.beta1 = parse_unit_interval("optimizer.beta1", *v);
  if (const auto v = given("beta2")) m.beta2 = parse_unit_interval("optimizer.beta2", *v);
  if (const auto v = given("eps")) {
    m.eps = parse_double("optimizer.eps", *v);
    if (!(m.eps > 0)) throw_input_error("optimizer.eps", "a number > 0", quoted(*v));
  }
  if (const auto v = given("batch_size")) m.batch_size = parse_size("optimizer.batch_size", *v);
  if (const auto v = given("order")) m.order = parse_choice("optimizer.order", *v, order_choices);
}

void build_optimizer(StudyConfig& c, const KeyValues& kv) {
  c.optimizer.method = parse_registered("optimizer.method", kv.get("optimizer.method"), method_registry());
  build_method_settings(c, kv);
  c.optimizer.lr.clear();
  for (const auto& s : split_list("optimizer.lr", kv.get("optimizer.lr"))) {
    const double lr = parse_double("optimizer.lr", s);
    if (!(lr > 0)) throw_input_error("optimizer.lr", "learning rates > 0", quoted(s));
    c.optimizer.lr.push_back(lr);
  }
  require_distinct("optimizer.lr", c.optimizer.lr, format_number);
  const std::string steps = kv.get("optimizer.steps"), horizon = kv.get("optimizer.horizon");
  if (steps.empty() == horizon.empty())
    throw InputError("optimizer.steps: expected exactly one of optimizer.steps and optimizer.horizon, got " +
                     std::string(steps.empty() ? "neither" : "both"));
  if (!steps.empty()) {
    c.optimizer.steps = parse_step_count("optimizer.steps", steps);
  } else {
    c.optimizer.horizon = parse_double("optimizer.horizon", horizon);
    if (!(c.optimizer.horizon > 0)) throw_input_error("optimizer.horizon", "a final time > 0", quoted(horizon));
    for (double lr : c.optimizer.lr) {
      const double k = c.optimizer.horizon / lr;
      if (k > static_cast<double>(max_step_count))
        throw InputError("optimizer.horizon: expected at most " + integer_text(max_step_count) + " steps of every lr, got " +
                         format_number(k) + " with lr " + format_number(lr));
      if (std::llround(k) < 1 || std::abs(k - std::round(k)) > 1e-9 * k)
        throw InputError("optimizer.horizon: expected a whole multiple of every optimizer.lr, got horizon " + horizon +
                         " with lr " + format_number(lr));
    }
  }
  c.optimizer.record_every = parse_step_count("optimizer.record_every", kv.get("optimizer.record_every"));
  c.optimizer.divergence_factor = parse_double("optimizer.divergence_factor", kv.get("optimizer.divergence_factor"));
  if (!(c.optimizer.divergence_factor > 1))
    throw_input_error("optimizer.divergence_factor", "a number > 1", quoted(kv.get("optimizer.divergence_factor")));
}

void build_flows_and_output(StudyConfig& c, const KeyValues& kv) {
  c.flows.kinds.clear();
  for (const auto& s : split_list("flows.kinds", kv.get("flows.kinds")))
    c.flows.kinds.push_back(parse_registered("flows.kinds", s, flow_registry()));
  require_distinct("flows.kinds", c.flows.kinds, [](const std::string& k) { return k; });
  // The method's trajectory has the method's name in the run file (a registered flow may share it).
  for (const std::string& k : c.flows.kinds)
    if (k == c.optimizer.method)
      throw_input_error("flows.kinds", "flows named apart from the trajectory of optimizer.method", quoted(k));
  c.flows.rtol = parse_double("flows.rtol", kv.get("flows.rtol"));
  if (!(c.flows.rtol > 0 && c.flows.rtol < 1)) throw_input_error("flows.rtol", "a number in (0, 1)", quoted(kv.get("flows.rtol")));
  c.flows.atol = parse_double("flows.atol", kv.get("flows.atol"));
  if (!(c.flows.atol >= 0)) throw_input_error("flows.atol", "a number >= 0", quoted(kv.get("flows.atol")));
  c.flows.max_steps = parse_step_count("flows.max_steps", kv.get("flows.max_steps"));
  c.flows.start_correction = parse_choice("flows.start_correction", kv.get("flows.start_correction"), switch_choices);

  c.output_options.store_theta = parse_choice("output.theta", kv.get("output.theta"), theta_choices);
  c.output_options.sharpness = parse_choice("output.sharpness", kv.get("output.sharpness"), switch_choices);
  c.output_options.rates = parse_choice("output.rates", kv.get("output.rates"), switch_choices);
  c.output_options.observables.clear();
  if (!kv.get("output.observables").empty())
    for (const auto& s : split_list("output.observables", kv.get("output.observables")))
      c.output_options.observables.push_back(parse_further_observable(s));
  require_distinct("output.observables", c.output_options.observables, [](const std::string& k) { return k; });
  c.output_options.checkpoint_every = parse_step_count("output.checkpoint_every", kv.get("output.checkpoint_every"), 0);
  c.output_options.progress_every = parse_double("output.progress_every", kv.get("output.progress_every"));
  if (!(c.output_options.progress_every >= 0))
    throw_input_error("output.progress_every", "a number of seconds >= 0", quoted(kv.get("output.progress_every")));
}

// The sweep grid's size: each run writes its own file, and every rank lists them all (some 200 bytes a
// run), so a grid within the run indices' int could still end in std::bad_alloc (an adversarial review:
// 1e9 runs) or fill a file system's inode quota; 1e7 runs is days of work for a cluster at a second a run.
void require_grid_size(const StudyConfig& c) {
  constexpr long long max_runs = 10'000'000;
  const double runs = static_cast<double>(c.optimizer.lr.size()) * static_cast<double>(c.seeds.size()) *
                      static_cast<double>(c.model.weight_decay.size());
  if (runs > static_cast<double>(max_runs))
    throw_input_error("optimizer.lr", "a sweep grid (optimizer.lr x study.seed x model.weight_decay) of at most " +
                                          integer_text(max_runs) + " runs (each writes its own run file)",
                      (runs < 9e15 ? integer_text(static_cast<long long>(runs)) : format_number(runs)) + " runs");
}

StudyConfig build_config(const Values& values) {
  for (const auto& [key, value] : values) check_value(key, value);
  const KeyValues kv(values);
  StudyConfig c;
  build_study(c, kv);
  build_model(c, kv);
  build_data(c, kv);
  build_optimizer(c, kv);
  build_flows_and_output(c, kv);
  require_grid_size(c);
  c.resolved_text = resolved_text(canonical_values(c, kv));
  return c;
}

std::string read_text_file(const std::string& key, const std::string& path) {
  require_regular_file(key, path);
  std::ifstream file(path, std::ios::binary);
  if (!file) throw InputError(key + ": cannot open file '" + path + "'");
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

// --shard i/n, 0 <= i < n.
void parse_shard(const std::string& text, Command& cmd) {
  const auto slash = text.find('/');
  if (slash == std::string::npos) throw_input_error("--shard", "i/n with 0 <= i < n", quoted(text));
  cmd.shards = static_cast<int>(parse_integer("--shard", text.substr(slash + 1), 1, max_size));
  cmd.shard = static_cast<int>(parse_integer("--shard", text.substr(0, slash), 0, cmd.shards - 1));
}

}  // namespace

// A '#' starting a word would otherwise be kept as part of the value (comments are whole lines).
void check_value(const std::string& key, const std::string& value) {
  for (unsigned char c : value)
    if (is_control(c)) throw_input_error(key, "a value without control characters", quoted(escaped(value)));
  for (std::size_t at = value.find('#'); at != std::string::npos; at = value.find('#', at + 1))
    if (at == 0 || value[at - 1] == ' ' || value[at - 1] == '\t')
      throw_input_error(key, "a value without a comment (comments are lines starting with # or ;)", quoted(value));
}

StudyConfig parse_config_text(const std::string& ini, const std::string& where) {
  Values values = read_ini(ini, where);
  add_defaults(values);
  return build_config(values);
}

namespace {

// keys_not_read_by of a data.source text. Throws InputError for a malformed source.
std::vector<std::string> keys_not_read_by(const std::string& source) {
  DataConfig d;
  parse_source(d, source);
  return keys_not_read_by(d);
}

}  // namespace

std::string canonical_config_text(const std::string& ini) {
  try {
    Values values = read_ini(ini, "study.ini");
    // An older eomlab accepted, and ignored, the keys a file source does not read: what it wrote is the
    // study of their defaults.
    for (const std::string& key :
         keys_not_read_by(values.count("data.source") ? values.at("data.source") : default_of("data.source")))
      values.erase(key);
    add_defaults(values);
    return build_config(values).resolved_text;
  } catch (const InputError&) {
    return ini;
  }
}

Command parse_command_line(int argc, const char* const argv[]) {
  po::options_description general("Options");
  general.add_options()                                                   //
      ("config", po::value<std::string>(), "study config file (INI)")     //
      ("help", "print this help and exit")                                //
      ("version", "print the version and exit")                           //
      ("print-config", "print the resolved config (defaults included; the keys of other methods, data sources and of model.layers beside an architecture left out) and exit")  //
      ("dry-run", "print the sweep grid and which ranks run what, then exit")      //
      ("overwrite", "replace existing results in the output directory")                   //
      ("resume", "continue an interrupted study in the same output directory")          //
      ("shard", po::value<std::string>(), "i/n: run only runs i, i+n, i+2n, ... (job arrays)")  //
      ("catalog", "(re)build <output>/sweep.h5 from the run files present, then exit");
  po::options_description keys("Config keys (in the file as [section] key = value, or --section.key=value)");
  // The keys whose values are registered names list what is registered now (extensions included).
  const std::map<std::string, std::string> registered{{"optimizer.method", method_registry().joined_names()},
                                                      {"flows.kinds", flow_registry().joined_names()},
                                                      {"output.observables", further_observables_text()}};
  for (const KeySpec& k : config_keys()) {
    std::string help = k.help;
    if (const auto it = registered.find(k.key); it != registered.end()) help += ": " + it->second;
    if (const std::string readers = method_key_readers(k.key); !readers.empty()) help += "; read by " + readers;
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
    // No prefixes: --overw would pass for --overwrite (which the SLURM job script, matching whole flags,
    // would then keep on a restart beside its --resume), and --optimizer.l=0.1 for --optimizer.lr.
    const int style = po::command_line_style::default_style & ~po::command_line_style::allow_guessing;
    po::store(po::command_line_parser(argc, argv).options(all).style(style).run(), vm);
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
  // The command line beats the file, the file beats the defaults.
  Values values;
  for (const KeySpec& k : config_keys())
    if (vm.count(k.key)) values.emplace(k.key, trim(vm[k.key].as<std::string>()));
  const std::string path = vm["config"].as<std::string>();
  Values file = read_ini(read_text_file("--config", path), path);
  // Keys a study gives instead of others: given on the command line, one replaces the file's others (an
  // architecture names its layers' activations and normalizations too). Both on the command line stay refused.
  const std::map<std::string, std::vector<std::string>> instead_of = {
      {"optimizer.steps", {"optimizer.horizon"}},
      {"optimizer.horizon", {"optimizer.steps"}},
      {"model.layers", {"model.architecture"}},
      {"model.architecture", {"model.layers", "model.activation", "model.normalize"}}};
  for (const auto& [given, others] : instead_of)
    if (values.count(given))
      for (const std::string& other : others)
        if (!values.count(other)) file.erase(other);
  // So does a data source: the file's keys of the source it replaces that the new one does not read go.
  if (values.count("data.source"))
    for (const std::string& key : keys_not_read_by(values.at("data.source")))
      if (!values.count(key)) file.erase(key);
  values.merge(file);
  add_defaults(values);
  cmd.config = build_config(values);
  cmd.overwrite = vm.count("overwrite") > 0;
  cmd.resume = vm.count("resume") > 0;
  if (cmd.overwrite && cmd.resume)
    throw InputError("command line: expected at most one of --resume and --overwrite, got both");
  if (vm.count("shard")) parse_shard(trim(vm["shard"].as<std::string>()), cmd);
  std::vector<std::string> actions;
  for (const char* flag : {"print-config", "dry-run", "catalog"})
    if (vm.count(flag)) actions.push_back(std::string("--") + flag);
  if (actions.size() > 1)
    throw InputError("command line: expected at most one of --print-config, --dry-run and --catalog, got " + actions[0] +
                     " and " + actions[1]);
  if (vm.count("catalog"))
    for (const char* flag : {"shard", "overwrite", "resume"})
      if (vm.count(flag))
        throw InputError(std::string("command line: --catalog lists every run of the study and changes none: expected no --") +
                         flag + ", got it");
  if (vm.count("print-config")) cmd.action = Action::print_config;
  if (vm.count("dry-run")) cmd.action = Action::dry_run;
  if (vm.count("catalog")) cmd.action = Action::catalog;
  return cmd;
}

}  // namespace eomlab::cli
