#include "study/study.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <vector>

#include "core/error.hpp"
#include "core/fingerprint.hpp"
#include "core/memory.hpp"
#include "data/images.hpp"
#include "data/synthetic.hpp"
#include "diff/objective.hpp"
#include "eomlab/version.hpp"
#include "flow/driver.hpp"
#include "flow/flow.hpp"
#include "flow/method.hpp"
#include "model/architecture.hpp"
#include "model/blas.hpp"
#include "io/catalog.hpp"
#include "io/checkpoint.hpp"
#include "io/input.hpp"
#include "io/run_file.hpp"
#include "io/run_summary.hpp"
#include "study/memory_budget.hpp"
#include "study/progress.hpp"
#include "study/output_lock.hpp"
#include "study/signals.hpp"

namespace fs = std::filesystem;

namespace eomlab {
namespace {

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string host_name() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

std::string run_path(const StudyConfig& c, const RunSpec& run) {
  return (fs::path(c.output) / "runs" / (run.run_id + ".h5")).string();
}

// The method's trajectory, then the flows (a method's trajectory is named after it).
std::vector<std::string> trajectory_names(const StudyConfig& c) {
  std::vector<std::string> names{c.optimizer.method};
  names.insert(names.end(), c.flows.kinds.begin(), c.flows.kinds.end());
  return names;
}

// How messages name the study's data: its file, its image source, or a synthetic source and its classes.
std::string data_text(const StudyConfig& c) {
  if (c.data.source == "hdf5") return "data file '" + c.data.path + "'";
  if (is_image_source(c.data.source)) return "data.source " + c.data.source + " ('" + c.data.path + "')";
  return "data.source " + c.data.source +
         (c.data.n_classes > 0 ? " (data.n_classes " + std::to_string(c.data.n_classes) + ")" : "");
}

// Refuses data that does not fit the network named by `key` (model.layers, or model.architecture's last
// layer): every label below the output width (cross_entropy) or as many target columns as outputs (mse),
// and, when `inputs` > 0 (model.layers' first width), that many features per sample.
void require_data_fits(const Dataset& data, Index inputs, Index outputs, const std::string& key, const StudyConfig& c) {
  const std::string where = key + ": " + data_text(c);
  if (inputs > 0 && data.n_features() != inputs)
    throw InputError(where + " has " + std::to_string(data.n_features()) + " features" +
                     (data.shape().is_vector() ? "" : " (" + data.shape().text() + ")") + ", expected input width " +
                     std::to_string(inputs));
  if (data.has_labels()) {
    for (std::int64_t label : data.labels)
      if (label >= outputs)
        throw InputError(where + " has label " + std::to_string(label) + ", expected labels below output width " +
                         std::to_string(outputs));
  } else if (data.targets.rows() != outputs) {
    throw InputError(where + " has " + std::to_string(data.targets.rows()) + " target columns, expected output width " +
                     std::to_string(outputs));
  }
}

// model.architecture's last layer by position and text, which gives the network's outputs (the layers
// are known to parse).
std::string last_layer_key(const StudyConfig& c) {
  const std::vector<LayerSpec> layers = parse_architecture(c.model.architecture);
  return "model.architecture: layer " + std::to_string(layers.size()) + " '" + layers.back().text() + "'";
}

// Beside model.architecture, a given data.n_classes (an architecture's default is 0) is the network's outputs.
void require_given_classes(const StudyConfig& c, Index outputs) {
  if (c.data.n_classes > 0 && c.data.n_classes != outputs)
    throw InputError("data.n_classes: expected the network's output width " + std::to_string(outputs) + " (" +
                     last_layer_key(c) + "), got " + std::to_string(c.data.n_classes));
}

// Loads the whole data set (every rank of the study reads the same) and checks it against the model.
Dataset load_data(const StudyConfig& c) {
  Dataset data;
  if (!c.model.architecture.empty()) {
    if (is_synthetic(c.data)) {  // an adversarial review: data.n_classes 2 on 3 outputs ran, silently
      DataConfig d = c.data;
      const Index outputs = make_model(c.model, synthetic_shape(d)).n_outputs();
      require_given_classes(c, outputs);
      d.n_classes = outputs;
      return make_synthetic(d, c.model);
    }
    // mse: integer labels become one-hot targets as wide as the network's outputs (as model.layers'),
    // or as data.n_classes says for a file's.
    data = c.data.source == "hdf5"
               ? io::read_data_file(c.data.path, c.model.loss, c.data.n_classes > 0 ? c.data.n_classes : -1, "data.source")
               : load_images(c.data);
    const Index outputs = make_model(c.model, data.shape()).n_outputs();
    require_given_classes(c, outputs);
    if (c.data.source == "hdf5" && c.data.n_features > 0 && c.data.n_features != data.n_features())  // given
      throw InputError("data.n_features: expected the " + std::to_string(data.n_features()) + " features of " + data_text(c) +
                       ", got " + std::to_string(c.data.n_features));
    if (c.model.loss == LossKind::mse && data.has_labels()) {
      require_data_fits(data, 0, outputs, last_layer_key(c), c);
      given_labels_to_targets(data, outputs, "data.source");
    }
    return data;
  }
  const Index inputs = c.model.layers.front(), outputs = c.model.layers.back();
  if (c.data.source == "hdf5") {
    data = io::read_data_file(c.data.path, c.model.loss, outputs, "data.source");
    require_data_fits(data, inputs, outputs, "model.layers", c);
  } else if (is_image_source(c.data.source)) {
    data = load_images(c.data);
    require_data_fits(data, inputs, outputs, "model.layers", c);
    if (c.model.loss == LossKind::mse) given_labels_to_targets(data, outputs, "data.source");
  } else {
    data = make_synthetic(c.data, c.model);
  }
  return data;
}

// The study's model where its size is known before the data is read (an MLP; an architecture on synthetic
// data, whose shape the config gives), so that data far beyond memory is never made or loaded.
std::optional<Model> model_before_data(const StudyConfig& c) {
  if (c.model.architecture.empty()) return make_model(c.model);
  if (is_synthetic(c.data)) return make_model(c.model, synthetic_shape(c.data));
  return std::nullopt;
}

// The study's model for the data's samples (throws InputError if they do not fit together).
Model study_model(const StudyConfig& c, const Dataset& data) {
  Model model = make_model(c.model, data.shape());
  require_classes_for_cross_entropy(c.model, model);
  if (!c.model.architecture.empty()) require_data_fits(data, 0, model.n_outputs(), last_layer_key(c), c);
  return model;
}

std::string checkpoint_path(const StudyConfig& c, const RunSpec& run) {
  return (fs::path(c.output) / "checkpoints" / (run.run_id + ".h5")).string();
}

// The runs of this invocation: run i belongs to shard i mod shards.
std::vector<RunSpec> runs_of_shard(const std::vector<RunSpec>& grid, const StudyOptions& o) {
  std::vector<RunSpec> mine;
  for (const RunSpec& r : grid)
    if (in_shard(r.index, o.shard, o.shards)) mine.push_back(r);
  return mine;
}

// "section.key" -> value of a resolved INI text.
std::map<std::string, std::string> ini_values(const std::string& text) {
  std::map<std::string, std::string> values;
  std::istringstream in(text);
  std::string line, section;
  while (std::getline(in, line)) {
    if (line.size() > 2 && line.front() == '[') {
      section = line.substr(1, line.find(']') - 1);
    } else if (const auto eq = line.find(" = "); eq != std::string::npos) {
      values[section + "." + line.substr(0, eq)] = line.substr(eq + 3);
    }
  }
  return values;
}

// Run i of this invocation is computed by rank group i mod groups.
int group_of(std::size_t i, int groups) { return static_cast<int>(i % static_cast<std::size_t>(groups)); }

// What differs between two resolved configs, ignoring settings that do not change any result, and
// where the study is (a moved or copied output directory resumes).
std::string config_difference(const std::string& before, const std::string& now,
                              const std::function<bool(const std::string& key, const std::string& a, const std::string& b)>&
                                  same_value = {}) {
  static const std::set<std::string> run_independent = {"study.name", "study.output", "output.checkpoint_every",
                                                        "output.progress_every"};
  const auto a = ini_values(before), b = ini_values(now);
  std::set<std::string> keys;
  for (const auto& [k, v] : a) keys.insert(k);
  for (const auto& [k, v] : b) keys.insert(k);
  std::string diff;
  for (const std::string& k : keys) {
    if (run_independent.count(k)) continue;
    const auto ia = a.find(k), ib = b.find(k);
    const std::string va = ia == a.end() ? "(unset)" : ia->second, vb = ib == b.end() ? "(unset)" : ib->second;
    if (va != vb && !(same_value && same_value(k, va, vb)))
      diff += (diff.empty() ? "" : ", ") + k + " was '" + va + "', now '" + vb + "'";
  }
  return diff;
}

// The samples' shape where the config gives it without the data (a synthetic source), else none.
std::optional<Shape> shape_before_data(const DataConfig& data) {
  return is_synthetic(data) ? std::optional<Shape>(synthetic_shape(data)) : std::nullopt;
}

// Whether two architectures make the same layers for samples of shape `input` (conv(8, 3, stride=1) and
// conv(8, 3); batchnorm(affine=on) and batchnorm): each as the model resolves it.
bool same_layers(const StudyConfig& c, const std::string& a, const std::string& b, const Shape& input) {
  const auto resolved = [&](const std::string& architecture) {
    ModelConfig m = c.model;
    m.architecture = architecture;
    return make_model(m, input).architecture();
  };
  try {
    return resolved(a) == resolved(b);
  } catch (const Error&) {
    return false;  // one of them does not fit these samples: not the same study
  }
}

// The grid's lists (DESIGN.md §3.2): a run is one point of them, named by its run_id.
bool is_grid_key(const std::string& key) {
  return key == "study.seed" || key == "optimizer.lr" || key == "model.weight_decay";
}

// Whether the grid list `now` holds every value of `before` (as the resolved configs spell them), in their order.
bool list_extends(const std::string& before, const std::string& now) {
  const auto values = [](const std::string& list) {
    std::vector<std::string> out;
    std::stringstream in(list);
    for (std::string v; std::getline(in, v, ',');) {
      const auto first = v.find_first_not_of(' '), last = v.find_last_not_of(' ');
      if (first != std::string::npos) out.push_back(v.substr(first, last - first + 1));
    }
    return out;
  };
  // In their order: a list reordered gives the runs other indices, so the shards of a job array other runs
  // (an adversarial review: shard 1/2 of 'seed = 2,1' found its runs done by shard 0/2 of '1,2', and the
  // two it owned under '1,2' were never computed).
  const std::vector<std::string> a = values(before), b = values(now);
  auto next = b.begin();
  for (const std::string& v : a) {
    next = std::find(next, b.end(), v);
    if (next == b.end()) return false;
    ++next;
  }
  return true;
}

// How a recorded config is compared: whole (a study's), or but for the grid's lists (a run's, which is
// one point of the grid whatever the lists; or a study's on --resume, whose lists may grow; or may have
// grown since this invocation's config was written, as for an array task submitted before a growth).
enum class GridLists { compared, ignored, may_grow, grown_since };

// What differs between a config recorded in the study directory (study.ini or a run file's, as an older
// eomlab may have spelled it) and this invocation's. Given the data's sample shape, architectures are
// compared by the layers they make, not by how they are spelled.
std::string difference_from_recorded(const StudyOptions& o, const std::string& recorded, const StudyConfig& c,
                                     const std::optional<Shape>& input = std::nullopt,
                                     GridLists grid = GridLists::compared) {
  return config_difference(o.canonical_config(recorded), c.resolved_text,
                           [&](const std::string& key, const std::string& a, const std::string& b) {
                             if (is_grid_key(key) && grid != GridLists::compared)
                               return grid == GridLists::ignored || (grid == GridLists::grown_since ? list_extends(b, a)
                                                                                                    : list_extends(a, b));
                             const auto given = [](const std::string& v) { return !v.empty() && v != "(unset)"; };
                             return input && key == "model.architecture" && given(a) && given(b) &&
                                    same_layers(c, a, b, *input);
                           });
}

// Writes `text` to `path` whole or not at all: a temporary file in the same directory, every write
// checked, fsync'd, renamed into place (or, with `only_new`, linked there unless `path` exists by then:
// false), the directory fsync'd. A failure (a full disk) leaves `path` as it was and throws an
// InputError naming `key` and the file.
bool write_file_atomically(const fs::path& path, const std::string& text, const std::string& key, bool only_new = false) {
  const fs::path temp = path.parent_path() / ("." + path.filename().string() + ".tmp." + std::to_string(getpid()));
  int err = 0;  // the first failure's errno
  auto step = [&err](bool ok) {
    if (!ok && err == 0) err = errno ? errno : EIO;
    return ok && err == 0;
  };
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (step(fd >= 0)) {
    for (std::size_t done = 0; done < text.size();) {
      const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
      if (!step(n > 0)) break;
      done += static_cast<std::size_t>(n);
    }
    step(::fsync(fd) == 0);
    step(::close(fd) == 0);
  }
  std::error_code ec;
  bool placed = false;
  if (err == 0 && only_new) {
    if (::link(temp.c_str(), path.c_str()) == 0) {
      placed = true;
      fs::remove(temp, ec);
    } else if (const int why = errno; why == EEXIST) {
      fs::remove(temp, ec);
      return false;
    } else if (why != EPERM && why != ENOTSUP && why != EOPNOTSUPP && why != ENOSYS) {
      err = why;
    }  // else a file system without hard links (vfat, some FUSE mounts): renamed below, as before
  }
  if (err == 0 && !placed) step(std::rename(temp.c_str(), path.c_str()) == 0);
  if (err == 0) {
    if (const int dir = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dir >= 0) {
      ::fsync(dir);
      ::close(dir);
    }
    return true;
  }
  fs::remove(temp, ec);
  throw InputError(key + ": cannot write '" + path.string() + "': " + std::strerror(err));
}

// The config a study directory was made with: <output>/study.ini, or, when that file is damaged (empty
// or cut short by a failed write of an older eomlab), the `config` attribute of one of its run files
// (every run file records it). text is empty when neither exists.
struct SavedConfig {
  std::string text;
  bool intact = true;  // false: study.ini must be rewritten
};

SavedConfig saved_config(const fs::path& out, bool rewrites = true) {
  const fs::path saved = out / "study.ini";
  std::error_code ec;
  if (!fs::exists(saved, ec)) return {};
  std::ifstream in(saved);
  std::stringstream text;
  text << in.rdbuf();
  const std::string s = text.str();
  // Written whole, it starts with [study] and ends with the [output] section and a newline.
  if (s.rfind("[study]\n", 0) == 0 && s.find("\n[output]\n") != std::string::npos && s.back() == '\n')
    return {s, true};
  SavedConfig recovered{"", false};
  std::vector<fs::path> files;  // in name order, as the report takes them: the same file whatever the file system
  for (const fs::directory_entry& entry : fs::directory_iterator(out / "runs", ec))
    if (entry.path().extension() == ".h5") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  for (const fs::path& file : files) {
    try {
      recovered.text = io::read_run_config(file.string());
    } catch (const Error&) {
      continue;
    }
    std::cerr << "eomlab: warning: '" << saved.string() << "' is " << (s.empty() ? "empty" : "cut short")
              << "; using the config recorded in '" << file.string() << "'" << (rewrites ? " and rewriting it" : "")
              << std::endl;
    break;
  }
  return recovered;
}

// The config in study.ini is shared by every shard of a study: a shard's --overwrite may replace it only
// when no other invocation runs on the directory and no other shard has results there. Otherwise the
// directory would hold runs of two configs and the other shards could no longer resume.
void refuse_shard_replacing_config(const StudyConfig& c, const std::vector<RunSpec>& mine, const std::string& diff) {
  const std::string why = "--overwrite --shard: '" + c.output + "' holds a study with another config (" + diff + ")";
  const std::string what = "; to replace the whole study, --overwrite without --shard; or use another directory";
  if (const std::string holder = lock_holder(c.output); !holder.empty())
    throw InputError(why + " that " + holder + " is running" + what);
  std::set<fs::path> own;
  for (const RunSpec& r : mine) own.insert(run_path(c, r));
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(fs::path(c.output) / "runs", ec))
    if (entry.path().extension() == ".h5" && !own.count(entry.path()))
      throw InputError(why + " of which other shards have results (" + entry.path().filename().string() + ")" + what);
}

// Fingerprints of what the runs are computed from beside the config (core/fingerprint.hpp): a data file's
// values as stored (an image source's labels, shape and pixel bytes, not its normalized pixels, whose last
// bits may differ between builds; synthetic data is pinned by the config), and model.init's parameters.
// Run files keep them as attributes and checkpoints as one text, so --resume refuses files computed from
// inputs edited since, and never continues another study's checkpoint.
struct StudyInputs {
  std::string data, init;  // "": not fingerprinted (synthetic data; no model.init)
  // An image source's data_fingerprint as eomlab wrote it before its pixels were in it (168ee9b to
  // aaa2e9b: labels and shape only), accepted on --resume; the file keeps it (its pixels were never checked).
  std::string data_before_pixels;

  StudyInputs(const StudyConfig& c, const Dataset& d, const Vector& init_from_file)
      : data(is_synthetic(c.data) ? "" : data_fingerprint(d)),
        init(init_from_file.size() > 0 ? vector_fingerprint(init_from_file) : ""),
        data_before_pixels(d.stored_fingerprint.empty() ? "" : data_fingerprint(d, false)) {}

  std::vector<std::pair<std::string, std::string>> attributes(bool before_pixels = false) const {
    std::vector<std::pair<std::string, std::string>> a;
    if (!data.empty()) a.emplace_back("data_fingerprint", before_pixels ? data_before_pixels : data);
    if (!init.empty()) a.emplace_back("init_fingerprint", init);
    return a;
  }
  std::string text(bool before_pixels = false) const {
    std::string t;
    for (const auto& [name, value] : attributes(before_pixels)) t += (t.empty() ? "" : ", ") + name + " " + value;
    return t;
  }
  // Whether a run file whose data_fingerprint is `recorded` was computed from this data.
  bool accepts_data(const std::string& recorded) const {
    return recorded == data || (!data_before_pixels.empty() && recorded == data_before_pixels);
  }
};

// Refuses the run file at `path` whose recorded fingerprints (`written`) are not of this invocation's inputs.
void refuse_other_inputs(const StudyConfig& c, const StudyOptions& o, const std::string& path,
                         const std::map<std::string, std::string>& written, const StudyInputs& inputs) {
  for (const auto& [name, now] : inputs.attributes()) {
    const auto recorded = written.find(name);
    const bool data = name == "data_fingerprint";
    if (recorded == written.end() || recorded->second == now || (data && inputs.accepts_data(recorded->second))) continue;
    throw InputError(std::string(data ? "data.source" : "model.init") + ": run file '" + path + "' was computed from " +
                     (data ? "other data" : "other initial parameters") + " (" + name + " " + recorded->second +
                     ", now " + now + "): " + (data ? data_text(c) : "parameters file '" + c.model.init_path + "'") +
                     " has changed since; restore it, or --overwrite" + (o.shards > 1 ? " every shard" : ""));
  }
}

// --resume continues or skips the run files of this invocation's runs, --catalog lists them: each must have
// been written with the study's config (study.ini may have been edited or removed since), or it would be
// continued or counted as a result of another one. A file that cannot be read is left to the run (it starts
// again) or listed as unreadable. Returns the attributes read, by run file.
using RecordedAttributes = std::map<std::string, std::map<std::string, std::string>>;
RecordedAttributes refuse_runs_of_another_config(const StudyConfig& c, const StudyOptions& o,
                                                 const std::vector<RunSpec>& mine, const std::string& flag,
                                                 const std::optional<Shape>& input = std::nullopt,
                                                 const StudyInputs* inputs = nullptr,
                                                 GridLists lists = GridLists::ignored) {
  RecordedAttributes read;
  std::error_code ec;
  for (const RunSpec& r : mine) {
    const std::string path = run_path(c, r);
    if (!fs::exists(path, ec)) continue;
    std::map<std::string, std::string> written;
    try {
      written = io::read_run_strings(path, {"config", "run_id", "data_fingerprint", "init_fingerprint"});
    } catch (const Error&) {
      continue;
    }
    const std::string remedy = flag == "--resume" ? "; use another directory, or --overwrite" : "; give the study's own config";
    if (written.count("run_id") && written["run_id"] != r.run_id)
      throw InputError(flag + ": run file '" + path + "' holds run '" + written["run_id"] + "', not '" + r.run_id +
                       "' (copied or renamed by hand); move it away" + (flag == "--resume" ? ", or --overwrite" : ""));
    if (written.count("config"))
      if (const std::string diff = difference_from_recorded(o, written["config"], c, input, lists); !diff.empty())
        throw InputError(flag + ": run file '" + path + "' was written with another config (" + diff + ")" + remedy);
    if (inputs) refuse_other_inputs(c, o, path, written, *inputs);
    read[path] = std::move(written);
  }
  return read;
}

// The shards of one study are of one data set: a shard that does not replace its runs checks the data and
// model.init fingerprints of each other shard's first run file (an adversarial review: a shard computed
// after its data file changed joined the others' results unnoticed). One file a shard, as a shard computes
// all its runs from the inputs it began with, so the S shards of an array open S files each.
void refuse_other_shards_of_other_inputs(const StudyConfig& c, const StudyOptions& o, const StudyInputs& inputs) {
  const std::vector<RunSpec> grid = expand_grid(c);
  std::error_code ec;
  for (int shard = 0; shard < o.shards && static_cast<std::size_t>(shard) < grid.size(); ++shard) {
    const std::string path = run_path(c, grid[static_cast<std::size_t>(shard)]);
    if (shard == o.shard || !fs::exists(path, ec)) continue;
    std::map<std::string, std::string> written;
    try {
      written = io::read_run_strings(path, {"data_fingerprint", "init_fingerprint"});
    } catch (const Error&) {
      continue;  // being written, or damaged: its own shard's --resume sees to it
    }
    refuse_other_inputs(c, o, path, written, inputs);
  }
}

// Open MPI's MPI-IO (its sharedfp lock file) builds a name from each opened file's path in a 256-byte buffer
// and aborts the process past it (seen at 245 characters: exit 134 at the first checkpoint, which is then
// lost). Paths are refused at start while they leave room for its suffix.
void refuse_paths_too_long_for_mpi_io(const StudyConfig& c, const std::vector<RunSpec>& mine) {
  constexpr std::size_t longest = 230;
  for (const RunSpec& r : mine)
    for (const std::string& path : {run_path(c, r), checkpoint_path(c, r) + ".tmp"})
      if (path.size() > longest)
        throw InputError("study.output: expected a directory whose files' paths have at most " + std::to_string(longest) +
                         " characters (MPI-IO aborts on longer ones), got '" + c.output + "' (its '" + path + "' has " +
                         std::to_string(path.size()) + ")");
}

// Whether `output` holds a study: its study.ini or a run file.
bool holds_a_study(const std::string& output) {
  std::error_code ec;
  if (fs::exists(fs::path(output) / "study.ini", ec)) return true;
  for (const fs::directory_entry& entry : fs::directory_iterator(fs::path(output) / "runs", ec))
    if (entry.path().extension() == ".h5") return true;
  return false;
}

// Refuses an output whose runs/ or checkpoints/ could not be made or written in, as far as can be told
// without making anything, with the line the making would give: the nearest existing path on the way is
// not a directory, or is not writable (a read-only file system, no permission).
void refuse_unwritable_output(const StudyConfig& c) {
  for (const char* folder : {"runs", "checkpoints"}) {
    const fs::path dir = fs::path(c.output) / folder;
    std::error_code ec;
    fs::path at = fs::absolute(dir, ec);
    while (!fs::exists(at, ec) && at.has_relative_path()) at = at.parent_path();
    const std::string problem = !fs::is_directory(at, ec)              ? std::strerror(ENOTDIR)
                                : access(at.c_str(), W_OK | X_OK) != 0 ? std::strerror(errno)
                                                                       : "";
    if (!problem.empty()) throw InputError("study.output: cannot create directory '" + dir.string() + "': " + problem);
  }
  // study.ini is replaced by a rename: a directory (or fifo) of that name would refuse it after the folders
  // and the lock were made.
  const fs::path saved = fs::path(c.output) / "study.ini";
  std::error_code ec;
  if (fs::exists(fs::symlink_status(saved, ec)) && !fs::is_regular_file(saved, ec))
    throw InputError("study.output: cannot write '" + saved.string() + "': " +
                     (fs::is_directory(saved, ec) ? std::strerror(EISDIR) : "not a regular file"));
}

// What prepare_output found of the output directory before changing anything.
struct OutputCheck {
  SavedConfig before;
  bool rewrite_saved = false;
};

// Checks the output directory against this invocation without changing anything: what --dry-run checks,
// and the first half of prepare_output. Existing results are those of this invocation's runs.
OutputCheck check_output(const StudyConfig& c, const StudyOptions& o, const std::vector<RunSpec>& mine,
                         const std::optional<Shape>& input, const StudyInputs* inputs, bool dry_run = false) {
  refuse_paths_too_long_for_mpi_io(c, mine);
  const fs::path out(c.output);
  std::error_code ec;
  OutputCheck check{saved_config(out, !dry_run), false};
  check.rewrite_saved = check.before.text.empty() || !check.before.intact;
  if (!check.before.text.empty()) {
    const std::string diff = difference_from_recorded(o, check.before.text, c, input);
    // --resume may extend the grid: its finished runs are kept and the new points computed.
    const bool extends = !diff.empty() && difference_from_recorded(o, check.before.text, c, input, GridLists::may_grow).empty();
    if (o.resume && extends) {
      check.rewrite_saved = true;
      if (o.shards > 1 && !dry_run)
        std::cerr << "eomlab: warning: --resume adds grid points to the study in '" << c.output << "': shard "
                  << o.shard << "/" << o.shards << " of the grown grid holds other runs than shard " << o.shard << "/"
                  << o.shards << " of the study's grid did; run every shard of the grown grid (--catalog lists the "
                  << "runs still missing)" << std::endl;
    }
    if (!diff.empty() && !(o.resume && extends)) {
      if (o.resume && difference_from_recorded(o, check.before.text, c, input, GridLists::grown_since).empty())
        throw InputError("--resume: the study in '" + c.output + "' has more grid points than this config (" + diff +
                         "), and a study's lists may only grow: continue it with its own grid (" +
                         (out / "study.ini").string() + "), which holds these runs (a job submitted before the grid "
                         "grew, as an array task requeued since, runs the old grid's shards: end it)");
      if (o.resume)
        throw InputError("--resume: the config differs from the study in '" + c.output + "': " + diff +
                         " (to the grid's lists, study.seed, optimizer.lr and model.weight_decay, values may be added, "
                         "the values there keeping their order)");
      if (!o.overwrite)
        throw InputError("study.output: '" + c.output + "' holds a study with another config (" + diff +
                         "); use another directory, or --overwrite" + (extends ? ", or --resume to add the new grid points" : ""));
      if (o.shards > 1) refuse_shard_replacing_config(c, mine, diff);
      check.rewrite_saved = true;
    }
  }
  // Without study.ini (removed) the run files' lists stand for the study's, which --resume may only grow (a
  // review: a shrunk grid was taken). Beside one, a file's lists may be older than an --overwrite's shrink.
  if (o.resume)
    refuse_runs_of_another_config(c, o, mine, "--resume", input, inputs,
                                  check.before.text.empty() ? GridLists::may_grow : GridLists::ignored);
  if (o.shards > 1 && !o.overwrite && inputs) refuse_other_shards_of_other_inputs(c, o, *inputs);
  std::size_t existing = 0;
  for (const RunSpec& r : mine) existing += fs::exists(run_path(c, r), ec) ? 1 : 0;
  if (o.shards == 1 && fs::exists(out / "sweep.h5", ec)) ++existing;
  if (existing > 0 && !o.overwrite && !o.resume)
    throw InputError("study.output: '" + c.output + "' already holds results; pass --resume to continue the study or "
                     "--overwrite to replace them");
  refuse_unwritable_output(c);
  return check;
}

// Checks the output directory against this invocation, takes the invocation's lock on it and prepares
// it (clearing what --overwrite replaces). World rank 0 only. Other shards' files are never touched.
OutputLock prepare_output(const StudyConfig& c, const StudyOptions& o, const std::vector<RunSpec>& mine, const Shape& input,
                          const StudyInputs& inputs) {
  const OutputCheck check = check_output(c, o, mine, input, &inputs);
  const SavedConfig& before = check.before;
  bool rewrite_saved = check.rewrite_saved;
  const fs::path out(c.output), runs = out / "runs", checkpoints = out / "checkpoints", saved = out / "study.ini";
  std::error_code ec;
  for (const fs::path& dir : {runs, checkpoints}) {
    std::error_code made;
    fs::create_directories(dir, made);
    if (made || !fs::is_directory(dir, ec))
      throw InputError("study.output: cannot create directory '" + dir.string() + "': " +
                       (made ? made.message() : std::string("a file of that name is in the way")));
  }
  const fs::path probe = runs / (".eomlab-write-test." + std::to_string(getpid()));
  if (FILE* f = std::fopen(probe.c_str(), "w")) {
    std::fclose(f);
    fs::remove(probe, ec);
  } else {
    throw InputError("study.output: directory '" + runs.string() + "' is not writable");
  }
  OutputLock lock(c.output, o.shard, o.shards, mine,
                  "eomlab (pid " + std::to_string(getpid()) + " on " + host_name() + " since " + utc_now() +
                      ", shard " + std::to_string(o.shard) + "/" + std::to_string(o.shards) + ")");
  if (o.overwrite) {
    for (const RunSpec& r : mine) {
      fs::remove(run_path(c, r), ec);
      fs::remove(checkpoint_path(c, r), ec);
      fs::remove(checkpoint_path(c, r) + ".bad", ec);  // a bad checkpoint kept for inspection is of the old results
    }
    if (o.shards == 1) fs::remove(out / "sweep.h5", ec);
    rewrite_saved = true;
  }
  // A new directory: another invocation (a shard of an array) may write its study.ini at the same moment;
  // the first one written stands, and a different config is refused as it would be a moment later.
  const bool only_new = before.text.empty() && before.intact;  // no study.ini at all (with --overwrite too)
  if (rewrite_saved && !write_file_atomically(saved, c.resolved_text, "study.output", only_new)) {
    const SavedConfig now = saved_config(out);
    if (const std::string diff = difference_from_recorded(o, now.text, c, input); !diff.empty())
      throw InputError("study.output: '" + c.output + "' holds a study with another config (" + diff +
                       "), written at the same moment by another invocation; use another directory");
  }
  return lock;
}

// What every run of this invocation shares.
struct StudyContext {
  const StudyConfig& config;
  const StudyOptions& options;
  const Dataset& data;
  const Vector& init_from_file;  // empty: the model's default initialisation
  const StudyInputs& inputs;
  const dist::Comm& world;
  const dist::Comm& group;
  std::vector<std::pair<std::string, std::string>> provenance;
};

// The checkpoint a run continues from, verified against its checksum, the run's settings and the run
// file. A bad one (corrupted, edited, or ahead of its run file) is never resumed from: group rank 0 warns
// naming the file, moves it aside to <checkpoint>.bad and the run starts again from step 0, so one
// run's bad files cost that run's time and stop nothing else. Collective over the run's group.
std::optional<DriverCheckpoint> checkpoint_to_resume(const StudyContext& s, const std::string& ckpt, const std::string& path,
                                                     const io::RunFileHeader& header, const DriverSettings& settings,
                                                     const std::string& method_state, const SliceExchange& slices,
                                                     const std::string& label, const std::string& run_id) {
  const dist::Comm& group = s.group;
  io::CheckpointRead read = io::read_checkpoint(ckpt, group, slices,
                                                {settings.flows.size(), settings.steps, settings.record_every,
                                                 method_state, run_id, s.inputs.text(),
                                                 s.inputs.data_before_pixels.empty() ? "" : s.inputs.text(true)});
  std::string problem = read.problem;
  if (problem.empty() && !read.config.empty() && group.rank() == 0)
    if (const std::string diff = difference_from_recorded(s.options, read.config, s.config, s.data.shape(), GridLists::ignored);
        !diff.empty())
      problem = "it was written with another config (" + diff + "): another study's";
  if (problem.empty() && read.checkpoint && group.rank() == 0) {
    const long records = read.checkpoint->records;
    const std::string run_file = io::reopen_problem(path, header, records, (records - 1) * settings.record_every);
    if (!run_file.empty()) problem = "run file '" + path + "': " + run_file;
  }
  problem = group.broadcast(problem);
  if (problem.empty()) return std::move(read.checkpoint);
  if (group.rank() == 0) {
    std::error_code ec;
    fs::rename(ckpt, ckpt + ".bad", ec);
    std::cerr << "eomlab: warning: " << label << "cannot resume from checkpoint '" << ckpt << "': " << problem
              << "; the run starts again from step 0 (the checkpoint is kept as '" << ckpt << ".bad')" << std::endl;
  }
  return std::nullopt;
}

// Checkpoints every `every` steps and on a stop signal; the run's ranks agree on both. Warns on
// stderr (group rank 0) the moment the method crosses its edge of stability.
class StudyControl final : public RunControl {
 public:
  StudyControl(const dist::Comm& group, const SliceExchange& slices, long every, std::string path, std::string label,
               io::CheckpointOrigin origin)
      : group_(group),
        slices_(slices),
        every_(every),
        path_(std::move(path)),
        label_(std::move(label)),
        origin_(std::move(origin)) {}
  bool stop_requested(long) override { return group_.max(stop_signal_received() ? 1 : 0) > 0; }
  bool checkpoint_due(long step) override { return every_ > 0 && step % every_ == 0; }
  void save(const DriverCheckpoint& c) override { io::write_checkpoint(path_, group_, slices_, c, origin_); }
  void edge_of_stability(long step, double value, const StabilityLimit& s) override {
    if (group_.rank() == 0)
      std::cerr << label_ << "warning: " << s.measure() << " = " << value << " > " << s.limit << " at step " << step
                << ": " << s.method << " is past the edge of stability and the EoM cannot describe it" << std::endl;
  }

 private:
  const dist::Comm& group_;
  const SliceExchange& slices_;
  long every_;
  std::string path_;
  std::string label_;
  io::CheckpointOrigin origin_;
};

// Status of an existing run file, or "" when it is missing or unreadable.
std::string run_file_status(const std::string& path, const std::vector<std::string>& trajectories) {
  if (!fs::exists(path)) return "";
  try {
    return io::read_run_result(path, trajectories).status;
  } catch (const Error&) {
    return "";
  }
}

// A run with this status is done: --resume skips it.
bool is_finished(const std::string& status) { return status == "complete" || status == "diverged"; }

// A column wide enough for the longest run id, so that columns never run together.
std::size_t run_id_width(const std::vector<RunSpec>& runs) {
  std::size_t width = 28;
  for (const RunSpec& run : runs) width = std::max(width, run.run_id.size() + 2);
  return width;
}

void print_summary(const StudyConfig& c, const std::vector<RunSpec>& runs, std::ostream& out) {
  const auto names = trajectory_names(c);
  out << "\nSummary of study '" << c.name << "' (" << runs.size() << " run" << (runs.size() == 1 ? "" : "s")
      << ", files in " << (fs::path(c.output) / "runs").string() << ")\n";
  const std::size_t id_width = run_id_width(runs);
  std::size_t name_width = 7;
  for (const std::string& name : names) name_width = std::max(name_width, name.size() + 1);
  const int run_w = static_cast<int>(id_width), status_w = 13, traj_w = static_cast<int>(name_width);
  const std::string distance = c.optimizer.method == OptimizerConfig{}.method ? "dist. to GD" : "dist. to " + c.optimizer.method;
  const int distance_w = std::max(18, static_cast<int>(distance.size()) + 2);
  out << std::left << std::setw(run_w) << "run" << std::setw(status_w) << "status" << std::setw(traj_w) << "traj" << std::right
      << std::setw(14) << "final loss" << std::setw(distance_w) << distance << std::setw(12) << "evals" << "\n";
  for (const RunSpec& run : runs) {
    if (!fs::exists(run_path(c, run))) {  // a study stopped before this run began
      out << std::left << std::setw(run_w) << run.run_id << "missing (not started)\n";
      continue;
    }
    io::RunResult r;
    try {
      r = io::read_run_result(run_path(c, run), names);
    } catch (const Error& e) {
      out << std::left << std::setw(run_w) << run.run_id << "unreadable: " << e.what() << "\n";
      continue;
    }
    for (std::size_t i = 0; i < r.trajectories.size(); ++i) {
      const io::TrajectoryResult& t = r.trajectories[i];
      out << std::left << std::setw(run_w) << (i == 0 ? r.run_id : "") << std::setw(status_w) << (i == 0 ? r.status : "")
          << std::setw(traj_w) << t.name << std::right << std::setw(14) << std::setprecision(6) << std::defaultfloat
          << t.final_loss << std::setw(distance_w);
      if (i == 0)
        out << "-";
      else
        out << std::scientific << std::setprecision(3) << t.final_distance;
      out << std::setw(12) << t.evaluations << std::defaultfloat << "\n";
    }
    if (r.status != "complete" && r.status != "diverged" && r.final_step >= 0)  // an unfinished run's last record
      out << std::left << std::setw(run_w) << "" << "(the values of its last record, step " << r.final_step << ")\n";
  }
}

// ½θ² in one dimension over n samples, never evaluated: the loss the study's method and flows are made on
// to ask what depends on the settings and N only (its models, period and stability limit).
class StandInLoss final : public Objective {
 public:
  explicit StandInLoss(Index n) : n_(n) {}
  Index dimension() const override { return 1; }
  double value(const Vector& theta) override { return 0.5 * theta.squaredNorm(); }
  double value_and_gradient(const Vector& theta, Vector& grad) override {
    grad = theta;
    return value(theta);
  }
  void hessian_vector(const Vector&, const Vector& v, Vector& hv) override { hv = v; }
  void third_order(const Vector& theta, const Vector&, const Vector&, Vector& out) override { out.setZero(theta.size()); }
  Index samples() const override { return n_; }

 private:
  Index n_;
};

std::unique_ptr<Method> method_on(StandInLoss& loss, const StudyConfig& c) {
  return make_method(c.optimizer.method, {loss, c.optimizer.lr.front(), c.optimizer.settings});
}

// What the study's method's edge of stability is judged by: whether by λ_max(P⁻¹H), and the limit of lr
// times it.
struct StabilityOfMethod {
  bool preconditioned;
  double limit;
};
StabilityOfMethod stability_of_method(const StudyConfig& c) {
  StandInLoss loss(0);
  const std::unique_ptr<Method> m = method_on(loss, c);
  return {m->preconditioned(), m->stable_lr_sharpness()};
}

// Bad input before anything is written: a flow the method does not provide (an eomP beyond its models),
// a batch size that does not divide the data's N samples (sgd), and a method's period (sgd: an epoch of
// m = N/b steps) that does not divide optimizer.record_every and every run's steps.
void require_method_fits(const StudyConfig& c, const std::vector<RunSpec>& grid, Index n_samples) {
  StandInLoss loss(n_samples);
  const std::unique_ptr<Method> method = method_on(loss, c);
  for (const std::string& flow : c.flows.kinds) make_flow(flow, {loss, *method, c.optimizer.lr.front()});
  const long period = method->period();
  if (period <= 1) return;
  const std::string epoch = "epochs of " + std::to_string(period) + " steps (" + c.optimizer.method + ")";
  if (c.optimizer.record_every % period != 0)
    throw InputError("optimizer.record_every: expected a multiple of " + std::to_string(period) +
                     " (records fall on whole " + epoch + "), got " + std::to_string(c.optimizer.record_every) +
                     (c.optimizer.record_every == 1 ? "; e.g. record_every = " + std::to_string(period) + " (a record per epoch)" : ""));
  for (const RunSpec& run : grid)
    if (run.steps % period != 0)
      throw InputError(std::string(c.optimizer.steps > 0 ? "optimizer.steps" : "optimizer.horizon") +
                       ": expected a whole number of " + epoch + ", got " + std::to_string(run.steps) +
                       " steps at lr " + format_number(run.lr));
}

// Refuses the study (InputError on every rank) when the ranks of some node would need more memory than
// it has available; the line is that of the lowest such rank.
// `node`: measured before the data was read (the estimate counts it).
void refuse_what_cannot_fit(const StudyConfig& c, const Model& model, const dist::Comm& world, const NodeMemory& node) {
  const MemoryEstimate estimate = estimate_rank_memory(c, model.n_params(), study_samples(c), &model);
  const std::string problem = memory_problem(c, estimate, world.node().size(), node);
  const long first = world.max(problem.empty() ? 0 : world.size() - world.rank());
  if (first > 0) throw InputError(world.broadcast(problem, static_cast<int>(world.size() - first)));
}

}  // namespace

int group_count(const StudyConfig& config, int world_size) {
  if (world_size % config.ranks_per_run != 0)
    throw InputError("study.ranks_per_run: expected a divisor of the number of MPI ranks " + std::to_string(world_size) +
                     ", got " + std::to_string(config.ranks_per_run));
  return world_size / config.ranks_per_run;
}

void print_dry_run(const StudyConfig& config, const StudyOptions& options, int world_size, int ranks_on_node,
                   std::ostream& out) {
  const int groups = group_count(config, world_size);
  const auto runs = runs_of_shard(expand_grid(config), options);
  // Everything that can refuse the study (an unreadable data file) before anything is printed. A study whose
  // size is known before its data (model_before_data) and too large for this node is described without
  // reading or making its data (a teacher network is as large as the model).
  std::optional<Shape> input = shape_before_data(config.data);
  std::optional<Dataset> data;  // read unless the study is too large for this node
  std::string memory;
  Index n_samples = study_samples(config), n_params = 0;
  const NodeMemory node = node_memory();  // before the data takes its share
  if (const std::optional<Model> model = model_before_data(config)) {
    const MemoryEstimate estimate = estimate_rank_memory(config, model->n_params(), n_samples, &*model);
    n_params = model->n_params();
    if (!memory_problem(config, estimate, ranks_on_node, node).empty())
      memory = describe_memory(estimate, node) + "; too large for this node, the data is not read";
  }
  if (memory.empty()) {
    data = load_data(config);
    const Model probe = study_model(config, *data);
    const MemoryEstimate estimate = estimate_rank_memory(config, probe.n_params(), n_samples, &probe);
    memory = describe_memory(estimate, node) +
             (memory_problem(config, estimate, ranks_on_node, node).empty() ? "" : "; too large for this node: a run would be refused");
    n_samples = data->n_samples();
    n_params = probe.n_params();
    input = data->shape();
  }
  require_method_fits(config, expand_grid(config), n_samples);
  Vector init;
  if (!config.model.init_path.empty()) init = io::read_parameters_file(config.model.init_path, n_params, "model.init");
  const std::optional<StudyInputs> inputs = data ? std::optional<StudyInputs>(StudyInputs(config, *data, init)) : std::nullopt;
  check_output(config, options, runs, input, inputs ? &*inputs : nullptr, true);  // as the run would, changing nothing
  refuse_output_in_use(config.output, runs);
  out << "study '" << config.name << "': " << runs.size() << " runs on " << world_size << " ranks, " << groups
      << " group(s) of " << config.ranks_per_run;
  if (options.shards > 1) out << " (shard " << options.shard << "/" << options.shards << ")";
  out << "\n" << memory << "\n";
  const int id_w = static_cast<int>(run_id_width(runs));
  out << std::left << std::setw(6) << "run" << std::setw(id_w) << "run_id" << std::setw(12) << "lr" << std::setw(8)
      << "seed" << std::setw(14) << "weight_decay" << std::setw(10) << "steps" << "ranks\n";
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const RunSpec& r = runs[i];
    const int g = group_of(i, groups);
    const int first = g * config.ranks_per_run, last = first + config.ranks_per_run - 1;
    out << std::left << std::setw(6) << r.index << std::setw(id_w) << r.run_id << std::setw(12) << format_number(r.lr)
        << std::setw(8) << r.seed << std::setw(14) << format_number(r.weight_decay) << std::setw(10) << r.steps
        << (first == last ? std::to_string(first) : std::to_string(first) + "-" + std::to_string(last)) << "\n";
  }
}

namespace {

// How this invocation treats one run of its share: group rank 0 decides, the group agrees.
enum class RunMode { fresh, resume, skip };

struct RunPlan {
  RunMode mode = RunMode::fresh;
  std::string finished_status;  // for skip: complete or diverged
};

// A run file that cannot be read (cut short, damaged) or is missing beside its checkpoint: the run starts
// again, saying so; its checkpoint, if any, is kept aside like a bad one.
void warn_restart(const RunSpec& run, const std::string& path, const std::string& ckpt) {
  std::error_code ec;
  const bool kept = fs::exists(ckpt, ec);
  if (kept) fs::rename(ckpt, ckpt + ".bad", ec);
  std::cerr << "eomlab: warning: [" << run.run_id << "] run file '" << path << "' is "
            << (fs::exists(path, ec) ? "unreadable" : "missing") << "; the run starts again from step 0"
            << (kept ? " (its checkpoint is kept as '" + ckpt + ".bad')" : "") << std::endl;
}

// The build (git_sha) that began a run file, or "" when it cannot be read.
std::string build_of(const std::string& path) {
  try {
    return io::read_run_string(path, "git_sha");
  } catch (const Error&) {
    return "";
  }
}

// Fresh, resumed from its checkpoint, or skipped because it has finished (--resume only), by its file's status
// (recorded_statuses; read by group rank 0).
RunPlan plan_run(const StudyConfig& c, const StudyOptions& o, const RunSpec& run, const std::string& status,
                 const dist::Comm& group) {
  std::string plan = "fresh";
  const std::string path = run_path(c, run), ckpt = checkpoint_path(c, run);
  std::error_code ec;
  if (group.rank() == 0 && o.resume) {
    if (is_finished(status))
      plan = status;
    else if (!status.empty() && fs::exists(ckpt, ec))
      plan = "resume";
    else if (status.empty() && (fs::exists(path, ec) || fs::exists(ckpt, ec)))
      warn_restart(run, path, ckpt);
  }
  if (group.rank() == 0 && plan == "fresh") fs::remove(ckpt, ec);
  plan = group.broadcast(plan);
  if (plan == "fresh") return {RunMode::fresh, ""};
  if (plan == "resume") return {RunMode::resume, ""};
  return {RunMode::skip, plan};
}

DriverSettings driver_settings(const StudyConfig& c, const RunSpec& run) {
  DriverSettings s;
  s.method = c.optimizer.method;
  s.method_settings = c.optimizer.settings;
  s.seed = run.seed;
  s.start_correction = c.flows.start_correction;
  s.lr = run.lr;
  s.steps = run.steps;
  s.record_every = c.optimizer.record_every;
  s.divergence_factor = c.optimizer.divergence_factor;
  s.flows = c.flows.kinds;
  s.integrator = {c.flows.rtol, c.flows.atol, c.flows.max_steps};
  s.rates = c.output_options.rates;
  s.observables = c.output_options.observables;
  return s;
}

// What a run file records of its provenance (the same on every rank of the group).
std::vector<std::pair<std::string, std::string>> provenance(const StudyConfig& c, const dist::Comm& world,
                                                            const std::string& host, const std::string& created) {
  std::vector<std::pair<std::string, std::string>> p = {{"eomlab_version", build::version},
                                                        {"git_sha", build::git_sha},
                                                        {"compiler", build::compiler},
                                                        {"mpi_library", dist::Environment::library_version()},
                                                        {"blas", blas_description()},
                                                        {"mpi_world_size", std::to_string(world.size())},
                                                        {"host", host},
                                                        {"study", c.name},
                                                        {"created", created}};
  for (const char* var : {"SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"})
    if (const char* v = std::getenv(var)) p.emplace_back(var, v);
  return p;
}

// The hyperparameters the study's method reads, as the run file's root attributes (DESIGN.md §3.7).
void set_method_attributes(const StudyConfig& c, io::RunFileHeader& header) {
  const MethodSettings& m = c.optimizer.settings;
  const std::pair<std::string, double> numbers[] = {
      {"momentum", m.momentum}, {"beta1", m.beta1}, {"beta2", m.beta2}, {"eps", m.eps}};
  for (const auto& [key, value] : numbers)
    if (method_key(c.optimizer.method, key)) header.method_numbers.emplace_back(key, value);
  if (method_key(c.optimizer.method, "batch_size")) header.method_integers.emplace_back("batch_size", m.batch_size);
  if (method_key(c.optimizer.method, "order"))
    header.method_texts.emplace_back("order", m.order == BatchOrder::fixed ? "fixed" : "reshuffle");
}

// A run's θ0 (the whole vector): model.init's, or the model's initialisation from the run's seed.
Vector initial_parameters(const StudyContext& s, const Model& model, const RunSpec& run) {
  return s.init_from_file.size() == 0 ? model.initial_parameters(run.seed) : s.init_from_file;
}

// A run's loss over its group's shards of the data; evaluations are collective over the group.
ModelObjective run_objective(const StudyContext& s, Model model, const RunSpec& run, const dist::SlicedVectors& slices) {
  const Index n = s.data.n_samples();
  const int rank = s.group.rank(), size = s.group.size();
  return ModelObjective(std::move(model), shard(s.data, rank, size), n, run.weight_decay, slices,
                        n * rank / size);  // shard()'s first sample
}

// The key to name, and the likely causes, when a study's loss is not finite at θ0 (data and model.init
// values whose squares would overflow are refused as they are read: core/dataset.hpp; their products may
// still overflow).
std::pair<std::string, std::string> blame_for_start(const StudyContext& s) {
  const std::string key = !s.config.model.init_path.empty() ? "model.init"
                          : !s.config.model.architecture.empty() ? "model.architecture" : "model.layers";
  return {key, "a batchnorm or layernorm with eps 0 over a channel of zero variance divides 0 by 0: give it eps > 0; "
               "else data and parameters whose products overflow: rescale them"};
}

// A loss that is not finite before any step is a setup to refuse, not a result: a batchnorm or layernorm
// with eps 0 over a channel of zero variance (a constant channel, a single sample) divides 0 by 0. Each
// group evaluates the start of each seed of its runs: the whole loss at that seed's θ0 and, for sgd, the
// first batch of that seed's order (an adversarial review: checking the group's first run only refused a
// sweep whose first seed's first batch was 0/0, and recorded the same run as diverged when it came later).
// Every rank throws the InputError of the lowest failing one.
void require_finite_start(const StudyContext& s, const std::vector<const RunSpec*>& runs) {
  std::string problem;
  if (!runs.empty()) {
    Model model = study_model(s.config, s.data);
    const dist::SlicedVectors slices(s.group, model.n_params());
    ModelObjective objective = run_objective(s, std::move(model), *runs.front(), slices);
    std::set<std::uint64_t> seeds;
    for (const RunSpec* run : runs) {
      if (!problem.empty() || !seeds.insert(run->seed).second) continue;
      const Vector whole = initial_parameters(s, objective.model(), *run), theta0 = whole.segment(slices.begin(), slices.local_size());
      double loss = objective.value(theta0);
      const DriverSettings settings = driver_settings(s.config, *run);
      const auto method = make_method(settings.method, {objective, settings.lr, settings.method_settings, settings.seed});
      if (std::isfinite(loss) && !method->loss_with_step()) {  // sgd: the first batch's loss (one sample: 0/0)
        method->start(theta0);
        loss = method->step_loss();
      }
      if (!std::isfinite(loss)) {
        const auto [key, cause] = blame_for_start(s);
        problem = key + ": expected a finite loss at the start, got " + format_number(loss) + " at run " + run->run_id +
                  "'s initial parameters" + (method->loss_with_step() ? "" : " (its first batch)") + " (" + cause + ")";
      }
    }
  }
  const long first = s.world.max(problem.empty() ? 0 : s.world.size() - s.world.rank());
  if (first > 0) throw InputError(s.world.broadcast(problem, static_cast<int>(s.world.size() - first)));
}

// Computes one run (fresh or from its checkpoint) into its run file; returns how it ended.
RunOutcome compute_run(const StudyContext& s, const RunSpec& run, RunMode mode, const std::string& label) {
  restart_peak_resident();
  const StudyConfig& config = s.config;
  const dist::Comm& group = s.group;
  const std::string path = run_path(config, run), ckpt = checkpoint_path(config, run);
  Model model = study_model(config, s.data);
  const Vector theta0_whole = initial_parameters(s, model, run);
  const dist::SlicedVectors slices(group, model.n_params());
  const Vector theta0 = theta0_whole.segment(slices.begin(), slices.local_size());
  const DriverSettings settings = driver_settings(config, run);

  io::RunFileHeader header;
  header.run_id = run.run_id;
  header.lr = run.lr;
  header.seed = run.seed;
  header.weight_decay = run.weight_decay;
  header.ranks_per_run = config.ranks_per_run;
  header.config_text = config.resolved_text;
  header.architecture = model.architecture();
  header.input_shape = model.input_shape().text();
  header.couples_samples = model.couples_samples();
  const StabilityOfMethod stability = stability_of_method(config);
  header.observables = observable_layout(model, config.output_options.sharpness, stability.preconditioned);
  header.n_params = model.n_params();
  header.n_samples = s.data.n_samples();
  header.slice_begin = slices.begin();
  header.slice_size = slices.local_size();
  header.records = record_layout(settings, header.observables, slices);
  header.store_theta = config.output_options.store_theta;
  header.rates = settings.rates;
  header.provenance = s.provenance;
  header.inputs = s.inputs.attributes();
  set_method_attributes(config, header);
  if (config.output_options.sharpness) header.method_numbers.emplace_back("stable_lr_sharpness", stability.limit);

  ModelObjective objective = run_objective(s, std::move(model), run, slices);
  std::optional<DriverCheckpoint> from;
  if (mode == RunMode::resume) {
    const std::string method_state = state_signature(make_method(settings.method, {objective, settings.lr, settings.method_settings, settings.seed})->save());
    from = checkpoint_to_resume(s, ckpt, path, header, settings, method_state, slices, label, run.run_id);
  }
  const std::string begun_by = group.rank() == 0 && from ? build_of(path) : std::string();
  std::unique_ptr<io::RunFile> file =
      from ? std::make_unique<io::RunFile>(path, group, header, from->records, group.broadcast(utc_now()))
           : std::make_unique<io::RunFile>(path, group, header);
  if (group.rank() == 0 && from) std::cout << label << "resuming at step " << from->step << std::endl;
  if (!begun_by.empty() && begun_by != build::git_sha)
    std::cerr << "eomlab: warning: " << label << "continued by eomlab " << build::git_sha << ", begun by " << begun_by
              << ": its records after step " << from->step << " may differ in the last bits from an uninterrupted run's"
              << std::endl;
  StudyControl control(group, slices, config.output_options.checkpoint_every, ckpt, label,
                       {run.run_id, config.resolved_text, s.inputs.text()});
  ProgressPrinter progress(group.rank() == 0, label.substr(0, label.size() - 1), config.output_options.progress_every);
  // An exception here may have hit one rank only: it is not caught (collective clean-up could hang);
  // main reports it and aborts the job, and the run file stays `running` for --resume.
  RunOutcome outcome = run_synchronized(objective, theta0, settings, header.observables, slices, *file,
                                        std::ref(progress), &control, from ? &*from : nullptr);
  outcome.peak_rank_memory_bytes = group.max(static_cast<long>(peak_resident_bytes()));
  // Attribute values must be the same on every rank of a parallel HDF5 file: the run's wall time is the
  // slowest rank's (each rank measured its own).
  for (TrajectorySummary& t : outcome.trajectories) t.wall_seconds = group.maximum(t.wall_seconds);
  file->finish(outcome, outcome.status == RunStatus::interrupted ? "" : group.broadcast(utc_now()));
  if (outcome.status != RunStatus::interrupted && group.rank() == 0) {
    std::error_code ec;
    fs::remove(ckpt, ec);
  }
  return outcome;
}

// "GD" for gd: the method as the messages name it.
std::string upper_case(std::string name) {
  for (char& ch : name) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return name;
}

// The status of each of `runs`' files on --resume (run_file_status), read once: what plan_run decides by and
// the runs left that an ETA counts (it skips the finished ones). Empty statuses without --resume.
std::vector<std::string> recorded_statuses(const StudyConfig& c, const StudyOptions& o,
                                           const std::vector<const RunSpec*>& runs) {
  std::vector<std::string> statuses(runs.size());
  if (o.resume)
    for (std::size_t i = 0; i < runs.size(); ++i) statuses[i] = run_file_status(run_path(c, *runs[i]), trajectory_names(c));
  return statuses;
}

// The group's ETA: the mean time of the runs it computed so far, times the runs it has left.
class GroupProgress {
 public:
  // Prints (group rank 0) how a finished run ended and how long the group's share has left.
  void finished(const std::string& label, const RunOutcome& outcome, double seconds, long runs_left, bool several_groups) {
    seconds_computing_ += seconds;
    ++runs_computed_;
    if (outcome.status == RunStatus::diverged)
      std::cout << label << upper_case(outcome.trajectories.front().name) << " diverged at step " << outcome.last_step
                << " (loss not finite or above optimizer.divergence_factor times its start; recorded as status = diverged)"
                << std::endl;
    for (const TrajectorySummary& t : outcome.trajectories)
      if (t.status != "ok") std::cout << label << t.name << " " << t.status << std::endl;
    std::cout << label << "done in " << std::fixed << std::setprecision(1) << seconds << " s; ";
    if (runs_left == 0)
      std::cout << "no runs left";
    else
      std::cout << runs_left << " run" << (runs_left == 1 ? "" : "s") << " left, ETA "
                << seconds_computing_ / static_cast<double>(runs_computed_) * static_cast<double>(runs_left) << " s";
    std::cout << (several_groups ? " for this rank group" : "") << std::defaultfloat << std::endl;
  }

 private:
  long runs_computed_ = 0;
  double seconds_computing_ = 0;
};

// Checks the output directory (world rank 0) and shares the verdict; the lock is held by world rank 0.
OutputLock prepare_output_everywhere(const StudyConfig& c, const StudyOptions& o, const std::vector<RunSpec>& runs,
                                     const Shape& input, const StudyInputs& inputs, const dist::Comm& world) {
  std::string verdict;
  OutputLock lock;
  if (world.rank() == 0) {
    try {
      lock = prepare_output(c, o, runs, input, inputs);
    } catch (const InputError& e) {
      verdict = e.what();
    }
  }
  verdict = world.broadcast(verdict);
  if (!verdict.empty()) throw InputError(verdict);
  return lock;
}

// The end of a study (world rank 0): the catalog, the summary table, peak memory and what to do next.
void finish_study(const StudyConfig& c, const StudyOptions& o, const std::vector<RunSpec>& grid,
                  const std::vector<RunSpec>& runs, long peak_memory, bool interrupted) {
  if (o.shards == 1) io::write_catalog(c.output, c.name, c.resolved_text, grid, trajectory_names(c));
  print_summary(c, runs, std::cout);
  std::cout << "Peak memory per rank: " << std::fixed << std::setprecision(1)
            << static_cast<double>(peak_memory) / (1024.0 * 1024.0) << " MiB" << std::defaultfloat << std::endl;
  if (o.shards == 1)
    std::cout << "Catalog: " << (fs::path(c.output) / "sweep.h5").string() << std::endl;
  else if (!interrupted)  // a stopped shard is not done: its catalog must wait for --resume
    std::cout << "Shard " << o.shard << "/" << o.shards
              << " done; after the last shard, build the catalog with eomlab --config ... --catalog" << std::endl;
  if (interrupted)
    std::cout << "Interrupted by a stop signal: unfinished runs are checkpointed; "
              << (o.how_to_resume.empty() ? "rerun with --resume (exit code " + std::to_string(exit_interrupted) + ")"
                                          : o.how_to_resume)
              << std::endl;
}

}  // namespace

int run_study(const StudyConfig& config, const StudyOptions& options, const dist::Comm& world) {
  const int groups = group_count(config, world.size());
  const std::vector<RunSpec> grid = expand_grid(config);
  const std::vector<RunSpec> runs = runs_of_shard(grid, options);

  // Validate inputs on every rank before anything is allocated or written.
  // Where the model's size is known before the data is read (model_before_data), data far beyond memory
  // is not made or loaded; otherwise it depends on the data's sample shape.
  const NodeMemory node = node_memory();
  const std::optional<Model> early = model_before_data(config);
  if (early) refuse_what_cannot_fit(config, *early, world, node);
  const Dataset data = load_data(config);
  const Model probe = study_model(config, data);
  require_method_fits(config, grid, data.n_samples());
  if (!early) refuse_what_cannot_fit(config, probe, world, node);
  Vector init_from_file;
  if (!config.model.init_path.empty())
    init_from_file = io::read_parameters_file(config.model.init_path, probe.n_params(), "model.init");
  const int group_index = world.rank() / config.ranks_per_run;
  const dist::Comm group = world.split(group_index, world.rank());
  const bool leader = group.rank() == 0;
  const std::string created = group.broadcast(utc_now());
  const StudyInputs inputs(config, data, init_from_file);
  const StudyContext context{config, options, data, init_from_file, inputs, world, group,
                             provenance(config, world, group.broadcast(host_name()), created)};
  std::vector<const RunSpec*> group_runs;
  for (std::size_t i = 0; i < runs.size(); ++i)
    if (group_of(i, groups) == group_index) group_runs.push_back(&runs[i]);
  require_finite_start(context, group_runs);
  // --resume where no study is (a relative study.output read from another working directory) starts one:
  // said with the absolute path, not "resuming".
  const bool nothing_to_resume = world.rank() == 0 && options.resume && !holds_a_study(config.output);
  const OutputLock lock = prepare_output_everywhere(config, options, runs, data.shape(), inputs, world);

  if (world.rank() == 0)
    std::cout << "eomlab " << build::version << ": study '" << config.name << "', " << runs.size() << " run(s)"
              << (options.shards > 1 ? " of shard " + std::to_string(options.shard) + "/" + std::to_string(options.shards)
                                     : std::string())
              << " on " << world.size() << " rank(s) in " << groups << " group(s)"
              << (nothing_to_resume ? ", nothing to resume in '" + fs::absolute(config.output).string() + "': starting it"
                  : options.resume  ? ", resuming"
                                    : "")
              << std::endl;

  bool interrupted = false;
  long peak_memory = 0;  // the runs' own peaks (each restarts the high-water mark)
  GroupProgress eta;
  // Group rank 0 decides each run's plan; the others' statuses stay empty.
  const std::vector<std::string> statuses =
      leader ? recorded_statuses(config, options, group_runs) : std::vector<std::string>(group_runs.size());
  for (std::size_t n = 0; n < group_runs.size() && !interrupted; ++n) {
    const RunSpec& run = *group_runs[n];
    const std::string label = "[run " + std::to_string(run.index + 1) + "/" + std::to_string(grid.size()) +
                              " " + run.run_id + "] ";
    if (group.max(stop_signal_received() ? 1 : 0) > 0) {
      interrupted = true;
      break;
    }
    const RunPlan plan = plan_run(config, options, run, statuses[n], group);
    if (plan.mode == RunMode::skip) {
      if (leader) std::cout << label << "already " << plan.finished_status << ", skipped" << std::endl;
      continue;
    }
    const auto run_start = std::chrono::steady_clock::now();
    const RunOutcome outcome = compute_run(context, run, plan.mode, label);
    peak_memory = std::max(peak_memory, outcome.peak_rank_memory_bytes);
    if (outcome.status == RunStatus::interrupted) {
      interrupted = true;
      if (leader) std::cout << label << "stop signal: checkpointed at step " << outcome.last_step << std::endl;
      break;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
    if (leader)
      eta.finished(label, outcome, seconds,
                   std::count_if(statuses.begin() + static_cast<long>(n) + 1, statuses.end(),
                                 [](const std::string& status) { return !is_finished(status); }),
                   groups > 1);
  }

  world.barrier();
  const bool any_interrupted = world.max(interrupted ? 1 : 0) > 0;
  peak_memory = world.max(std::max(peak_memory, static_cast<long>(peak_resident_bytes())));
  if (world.rank() == 0) finish_study(config, options, grid, runs, peak_memory, any_interrupted);
  return any_interrupted ? exit_interrupted : 0;
}

// The samples' shape a run file of `runs` records (/model input_shape), the first one readable; none if
// none is.
std::optional<Shape> recorded_input_shape(const StudyConfig& c, const std::vector<RunSpec>& runs) {
  std::error_code ec;
  for (const RunSpec& r : runs) {
    const std::string path = run_path(c, r);
    if (!fs::exists(path, ec)) continue;
    try {
      const auto found = io::read_run_strings(path, {"input_shape"}, "model");
      if (const auto it = found.find("input_shape"); it != found.end())
        if (const std::optional<Shape> shape = Shape::from_text(it->second)) return shape;
    } catch (const Error&) {
    }
  }
  return std::nullopt;
}

// --catalog lists the runs of the config it is given: a config other than the study's would list runs the
// study does not have, and miss those it has, as if they were results of this one.
// Architectures are compared by their layers: for the sample shape the config gives (synthetic data), else
// the one its run files record (the catalog reads no data file; an adversarial review: run files of a
// respelled architecture, accepted by --resume and --shard, made --catalog refuse an image study).
RecordedAttributes refuse_catalog_of_another_config(const StudyConfig& c, const StudyOptions& o, const std::vector<RunSpec>& runs) {
  // A mistyped study.output: nothing to list, and no sweep.h5 of "missing" runs written where no study is.
  const fs::path out(c.output);
  std::error_code ec;
  if (!fs::exists(out / "study.ini", ec) && !fs::is_directory(out / "runs", ec))
    throw InputError("--catalog: no study in '" + c.output + "' (" +
                     (fs::exists(out, ec) ? "neither study.ini nor runs/" : "no such directory") +
                     "): expected the output directory of a study (study.output)");
  std::optional<Shape> input = shape_before_data(c.data);
  if (!input) input = recorded_input_shape(c, runs);
  const SavedConfig saved = saved_config(fs::path(c.output), false);  // a damaged study.ini is left to --resume
  if (!saved.text.empty())
    if (const std::string diff = difference_from_recorded(o, saved.text, c, input); !diff.empty())
      throw InputError("--catalog: the config differs from the study in '" + c.output + "': " + diff +
                       "; give the study's own config (" + (fs::path(c.output) / "study.ini").string() + ")");
  return refuse_runs_of_another_config(c, o, runs, "--catalog", input);
}

// Two run files of `read` (their attributes, by path) computed from different data or initial parameters,
// as a message ("" if none): shards each replaced (--overwrite) after a data file changed, or a run begun
// by an eomlab whose data fingerprint was of the labels only (168ee9b..aaa2e9b). The catalog reads no data
// file: it can only compare the files with each other.
std::string mixed_inputs(const RecordedAttributes& read) {
  for (const std::string name : {"data_fingerprint", "init_fingerprint"}) {
    std::map<std::string, std::string> files;  // a fingerprint and the first file with it
    for (const auto& [path, written] : read)
      if (const auto it = written.find(name); it != written.end()) files.emplace(it->second, path);
    if (files.size() < 2) continue;
    const auto a = files.begin(), b = std::next(a);
    const bool data = name == "data_fingerprint";
    return std::string("run files fingerprinted from different ") + (data ? "data" : "initial parameters") + ": '" +
           a->second + "' (" + name + " " + a->first + ") and '" + b->second + "' (" + b->first + ")" +
           (files.size() > 2 ? " and " + std::to_string(files.size() - 2) + " more" : "") +
           (data ? "; unless one was begun by an eomlab from 168ee9b to aaa2e9b (whose image fingerprints were of the "
                   "labels only), their results are not of one study"
                 : "; their results are not of one study");
  }
  return "";
}

void rebuild_catalog(const StudyConfig& config, const StudyOptions& options, const dist::Comm& world) {
  const auto runs = expand_grid(config);
  std::string verdict;
  RecordedAttributes read;
  if (world.rank() == 0) {
    try {
      read = refuse_catalog_of_another_config(config, options, runs);
    } catch (const InputError& e) {
      verdict = e.what();
    }
  }
  verdict = world.broadcast(verdict);
  if (!verdict.empty()) throw InputError(verdict);
  if (world.rank() == 0) {
    const io::CatalogCounts counts =
        io::write_catalog(config.output, config.name, config.resolved_text, runs, trajectory_names(config));
    std::cout << "Catalog: " << (fs::path(config.output) / "sweep.h5").string() << " lists " << runs.size()
              << " runs, " << counts.found << " with a run file" << std::endl;
    if (const std::string mixed = mixed_inputs(read); !mixed.empty())
      std::cerr << "eomlab: warning: --catalog: " << mixed << std::endl;
    // 'running' in a file while no eomlab holds the study: the run was killed (OOM killer, node failure).
    if (counts.running > 0 && lock_holder(config.output).empty())
      std::cout << "Catalog: " << counts.running << " run(s) marked 'running' but no eomlab works on this study: they "
                << "were killed (the OOM killer, a node failure); --resume continues them from their last checkpoint"
                << std::endl;
  }
  world.barrier();
}

}  // namespace eomlab
