// The Python module `eomlab` (DESIGN.md §3.9): a Model, an Objective with exact g, Hv, T[u, v] and the
// vector field of any method's flow, and run() of a whole study in this process. numpy float64 in and
// out; evaluations release the GIL; bad arguments raise ValueError with the command line's message.
// Every argument is checked here and the numerics are eomlab's own (the same code as the binary).
#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <limits>
#include <list>
#include <cmath>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <streambuf>
#include <string>

#include "cli/options.hpp"
#include "core/error.hpp"
#include "core/words.hpp"
#include "diff/objective.hpp"
#include "dist/comm.hpp"
#include "flow/flow.hpp"
#include "flow/method.hpp"
#include "data/synthetic.hpp"
#include "flow/sgd.hpp"
#include "study/signals.hpp"
#include "study/study.hpp"

namespace py = pybind11;
using namespace eomlab;

namespace {

using Array = py::array_t<double, py::array::c_style | py::array::forcecast>;

// Text of C++ bytes for Python, a path's bytes that are not UTF-8 shown escaped (\xe9).
py::object shown(const char* bytes, std::size_t n) { return py::bytes(bytes, n).attr("decode")("utf-8", "backslashreplace"); }

// ValueError(message), shown (Python refused a message that is not UTF-8: an empty ValueError).
[[noreturn]] void bad(const std::string& message) {
  throw py::value_error(shown(message.data(), message.size()).cast<std::string>());
}

// The numpy kind of x's dtype ("f", "b", ..), or "" if x has none.
std::string dtype_kind(const py::handle& x) {
  if (!py::hasattr(x, "dtype") || !py::hasattr(x.attr("dtype"), "kind")) return "";
  return py::str(x.attr("dtype").attr("kind")).cast<std::string>();
}

// Python's and numpy's booleans (True is an int to Python, and float(numpy.True_) is 1.0).
bool is_bool(const py::handle& x) {
  return py::isinstance<py::bool_>(x) || dtype_kind(x) == "b";  // numpy.True_ and numpy.array(True) by their dtype
}

// A numpy floating scalar or 0-d array that is not a Python float (float32, float16, longdouble).
bool is_numpy_float(const py::handle& x) {
  if (PyFloat_Check(x.ptr()) || dtype_kind(x) != "f" || !py::hasattr(x, "ndim")) return false;
  return x.attr("ndim").cast<int>() == 0;
}

// A value's text as the OS takes it (a path's bytes): str() of it, or os.fspath of a path object, through
// os.fsencode (an undecodable byte of a file name back as that byte), not refused by pybind.
std::string os_text(const py::handle& value, const std::string& key) {
  const py::module_ os = py::module_::import("os");
  const py::object text = py::isinstance<py::bytes>(value) ? py::reinterpret_borrow<py::object>(value)
                          : py::hasattr(value, "__fspath__") ? os.attr("fspath")(value)
                                                              : py::str(value);
  try {
    return os.attr("fsencode")(text).cast<std::string>();
  } catch (const py::error_already_set& e) {
    if (!e.matches(PyExc_UnicodeError)) throw;
    bad(key + ": expected text the file system can take, got " + py::repr(value).cast<std::string>());  // a lone surrogate
  }
}

// The seeds a run can have: the config's study.seed and the run file's seed attribute (a signed 64-bit integer).
const char* const seed_range = "an integer seed in [0, 2**63)";
py::int_ seed_limit() { return py::int_(std::numeric_limits<long long>::max()); }

// The text of one value for `key`; bytes are refused (a list of their codes, or "b'..'", is no value of it),
// and so is what a config file refuses (cli::check_value): a line break would end the value and start keys
// of its own in the config text made from it. A numpy float of another precision (float32: str gives "0.1")
// is written as the Python float it is (0.10000000149011612; 2.0 is no integer), the value number_argument
// takes, so that run() and field() agree.
std::string value_text(const py::handle& value, const std::string& key) {
  if (py::isinstance<py::bytes>(value) || py::isinstance<py::bytearray>(value))
    bad(key + ": expected text (str), got " + py::repr(value).cast<std::string>());
  const std::string text = is_numpy_float(value) ? py::repr(py::float_(value.cast<double>())).cast<std::string>()
                                                  : os_text(value, key);
  cli::check_value(key, text);
  return text;
}

// One name (a flow's kind, a method) for `key`: a str, else ValueError (the text of a list would be parsed as
// a list of names, or as part of one).
std::string name_argument(const py::handle& value, const std::string& key) {
  if (!py::isinstance<py::str>(value)) bad(key + ": expected text (str), got " + py::repr(value).cast<std::string>());
  return value_text(value, key);
}

// "a,b,c" of a Python list or tuple (or the text of one value) for `key`.
std::string list_text(const py::handle& value, const std::string& key) {
  if (py::isinstance<py::str>(value) || py::isinstance<py::bytes>(value) || py::isinstance<py::bytearray>(value) ||
      !py::isinstance<py::iterable>(value))
    return value_text(value, key);
  std::string out;
  for (const py::handle& item : value) out += (out.empty() ? "" : ",") + value_text(item, key);
  return out;
}

// An array's shape as numpy prints it: "(3,)", "(1, 26)", "()".
std::string shape_text(const py::array& a) {
  std::string out = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) out += (i ? ", " : "") + std::to_string(a.shape(i));
  return out + (a.ndim() == 1 ? ",)" : ")");
}

// A float argument (float, int, numpy scalar), else ValueError naming it.
double number_argument(const py::handle& x, const std::string& name) {
  // float() would parse "0.1", and take the one value of an array (as no hyperparameter's text does);
  // True is no number here, as the config's text "True" is none
  if (py::isinstance<py::str>(x) || py::isinstance<py::bytes>(x) || is_bool(x) ||
      (py::isinstance<py::array>(x) && py::array::ensure(x).ndim() > 0))
    bad(name + ": expected a number, got " + py::repr(x).cast<std::string>());
  PyObject* number = PyNumber_Float(x.ptr());
  if (!number) {
    PyErr_Clear();
    bad(name + ": expected a number, got " + py::repr(x).cast<std::string>());
  }
  return py::reinterpret_steal<py::float_>(number).cast<double>();
}

// An integer argument (int, numpy integer: anything with __index__) in [0, limit], else ValueError
// naming it.
std::uint64_t whole_number(const py::handle& x, const std::string& name, const py::int_& limit, const std::string& what,
                           const std::string& function = "sgd_permutation") {
  const std::string bad_value = function + ": " + name + ": expected " + what + ", got " + py::repr(x).cast<std::string>();
  if (is_bool(x)) bad(bad_value);
  PyObject* index = PyNumber_Index(x.ptr());
  if (!index) {
    PyErr_Clear();
    bad(bad_value);
  }
  const auto i = py::reinterpret_steal<py::int_>(index);
  if (i < py::int_(0) || i > limit) bad(bad_value);
  return i.cast<std::uint64_t>();
}

// An array of numbers (integer or floating) from anything numpy makes one of (a list too), else ValueError
// naming the argument: None, strings and arrays of other types (text, objects, complex) are refused.
py::array array_argument(const py::object& x, const std::string& name) {
  const std::string got = name + ": expected an array of numbers, got ";
  if (x.is_none() || py::isinstance<py::str>(x) || py::isinstance<py::bytes>(x)) bad(got + py::repr(x).cast<std::string>());
  py::array a;
  try {
    a = py::module_::import("numpy").attr("asarray")(x).cast<py::array>();
  } catch (const py::error_already_set&) {
    bad(got + py::repr(x).cast<std::string>());
  }
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u' && kind != 'f') bad(got + "an array of dtype " + py::str(a.dtype()).cast<std::string>());
  return a;
}

// A network: Model(architecture=..., input_shape=(C, H, W) or (d,), loss=...) or
// Model(layers=[...], activation=..., normalize=..., loss=...), checked as the config would be.
struct PyModel {
  ModelConfig config;
  Shape input;
  std::shared_ptr<Model> model;

  static PyModel make(const py::kwargs& kw) {
    std::ostringstream model, data;
    model << "[model]\n";
    data << "[data]\n";
    Shape input;
    for (const auto& [k, v] : kw) {
      const std::string key = py::str(k);
      if (key == "input_shape") {
        std::vector<Index> dims;
        try {
          dims = v.cast<std::vector<Index>>();
        } catch (const py::cast_error&) {
          bad("input_shape: expected a tuple (d,) or (C, H, W) of sizes, got " + py::repr(v).cast<std::string>());
        }
        for (const Index d : dims)
          if (d < 1 || d > std::numeric_limits<int>::max())
            bad("input_shape: expected sizes in [1, " + std::to_string(std::numeric_limits<int>::max()) + "], got " +
                py::repr(v).cast<std::string>());
        if (dims.size() == 1) input = Shape(dims[0]);
        else if (dims.size() == 3) input = Shape{dims[0], dims[1], dims[2]};
        else bad("input_shape: expected (d,) or (C, H, W), got " + py::repr(v).cast<std::string>());
        data << "n_features = " << input.size() << "\n";
        if (dims.size() == 3) data << "shape = " << dims[0] << "," << dims[1] << "," << dims[2] << "\n";
      } else if (key == "architecture" || key == "layers" || key == "activation" || key == "normalize" ||
                 key == "loss") {
        model << key << " = " << list_text(v, key) << "\n";
      } else {
        bad("Model: unknown argument '" + key +
            "' (expected architecture, input_shape, layers, activation, normalize, loss)");
      }
    }
    const bool architecture = kw.contains("architecture");
    if (architecture && kw.contains("layers")) bad("layers: expected either layers or architecture, got both");
    if (architecture && !kw.contains("input_shape")) bad("input_shape: expected the samples' shape with architecture");
    if (!architecture && kw.contains("input_shape")) bad("input_shape: only with architecture (layers start with the input width)");
    // n_classes from the model itself: the data section only fixes the input.
    const StudyConfig c = cli::parse_config_text(model.str() + data.str() + "[optimizer]\nsteps = 1\n", "eomlab.Model");
    PyModel m;
    m.config = c.model;
    m.input = architecture ? input : Shape();
    try {
      m.model = std::make_shared<Model>(make_model(m.config, m.input));
      require_classes_for_cross_entropy(m.config, *m.model);
    } catch (const Error& e) {
      bad(e.what());
    }
    return m;
  }
};

Dataset dataset_of(const PyModel& m, const py::array& x, const py::array& y) {
  const Array xs = Array::ensure(x);
  if (!xs || xs.ndim() < 2)
    bad("X: expected a float64 array [N, ...] of samples, got " +
        (xs ? "an array of shape " + shape_text(xs) : py::repr(x).cast<std::string>()));
  const Index n = static_cast<Index>(xs.shape(0)), features = static_cast<Index>(xs.size()) / std::max<Index>(n, 1);
  if (n == 0) bad("X: expected at least one sample");
  const Shape& shape = m.model->input_shape();
  const bool flat = xs.ndim() == 2, image = !shape.is_vector() && xs.ndim() == 4 && xs.shape(1) == shape.channels &&
                                                xs.shape(2) == shape.height && xs.shape(3) == shape.width;
  if (!flat && !image)
    bad("X: expected samples [N, " + std::to_string(shape.size()) + "]" +
        (shape.is_vector() ? "" : " or [N, " + std::to_string(shape.channels) + ", " + std::to_string(shape.height) + ", " +
                                      std::to_string(shape.width) + "] (channels first)") +
        ", got an array of shape " + shape_text(xs));
  if (features != shape.size())
    bad("X: expected samples of " + shape.text() + " (" + std::to_string(shape.size()) + " values), got " +
        std::to_string(features));
  Dataset d;
  d.x = Eigen::Map<const Matrix>(xs.data(), features, n);  // row-major [N, features] is column-major features x N
  if (const std::string found = unusable_values(d.x); !found.empty())  // as a data file's /X
    bad(std::string("X: expected ") + usable_values_text + ", got " + found);
  d.sample_shape = shape;
  const Index outputs = m.model->n_outputs();
  // Labels: for cross_entropy, and for mse integers one per sample (made one-hot); else mse's targets.
  const py::array numbers = array_argument(y, "y");
  const bool integers = numbers.dtype().kind() == 'i' || numbers.dtype().kind() == 'u';
  if (m.config.loss == LossKind::cross_entropy || (integers && numbers.ndim() == 1)) {
    const auto as_float = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(y);
    if (as_float)
      for (py::ssize_t i = 0; i < as_float.size(); ++i) {
        const double label = as_float.data()[i];
        if (!(std::floor(label) == label)) bad("y: expected whole-number labels, got " + format_number(label));
        // before the cast to int64, which would wrap 2**64 to a label in range
        if (!(label >= 0 && label < static_cast<double>(outputs)))
          bad("y: expected labels in 0.." + std::to_string(outputs - 1) + " (the model's outputs), got " + format_number(label));
      }
    const auto labels = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(y);
    if (!labels || labels.ndim() != 1 || labels.shape(0) != n)
      bad("y: expected " + std::to_string(n) + " int64 labels (one per sample of X), got " +
          (labels ? "an array of shape " + shape_text(labels) : py::repr(y).cast<std::string>()));
    d.labels.assign(labels.data(), labels.data() + n);  // each in range: checked above, before the cast
    if (m.config.loss == LossKind::mse) given_labels_to_targets(d, outputs, "y");  // one-hot, as the study makes them
  } else {
    const Array targets = Array::ensure(y);
    if (!targets || targets.ndim() != 2 || targets.shape(0) != n || targets.shape(1) != outputs)
      bad("y: expected float64 targets [" + std::to_string(n) + ", " + std::to_string(outputs) + "] for mse (one row per sample of X), got " +
          (targets ? "an array of shape " + shape_text(targets) : py::repr(y).cast<std::string>()));
    d.targets = Eigen::Map<const Matrix>(targets.data(), outputs, n);
    if (const std::string found = unusable_values(d.targets); !found.empty())
      bad(std::string("y: expected targets of ") + usable_values_text + ", got " + found);
  }
  return d;
}

// The loss of a model on data, single process: value, gradient, hvp, third_order and flow fields.
class PyObjective {
 public:
  PyObjective(const PyModel& m, const py::array& x, const py::array& y, double weight_decay)
      : whole_(m.model->n_params()) {
    if (!(weight_decay >= 0 && std::isfinite(weight_decay)))
      bad("weight_decay: expected a finite number >= 0, got " + format_number(weight_decay));
    Dataset d = dataset_of(m, x, y);
    const Index n = d.n_samples();
    objective_ = std::make_unique<ModelObjective>(make_model(m.config, m.input), std::move(d), n, weight_decay, whole_);
  }
  Index n_params() const { return whole_.global_size(); }

  double value(const py::object& theta) {
    const Vector t = vector("theta", theta);
    py::gil_scoped_release free;
    const std::lock_guard<std::mutex> one_at_a_time(busy_);
    return objective_->value(t);
  }
  Vector gradient(const py::object& theta) {
    const Vector t = vector("theta", theta);
    Vector g;
    py::gil_scoped_release free;
    const std::lock_guard<std::mutex> one_at_a_time(busy_);
    objective_->value_and_gradient(t, g);
    return g;
  }
  Vector hvp(const py::object& theta, const py::object& v) {
    const Vector t = vector("theta", theta), d = vector("v", v);
    Vector out;
    py::gil_scoped_release free;
    const std::lock_guard<std::mutex> one_at_a_time(busy_);
    objective_->hessian_vector(t, d, out);
    return out;
  }
  Vector third_order(const py::object& theta, const py::object& u, const py::object& v) {
    const Vector t = vector("theta", theta), a = vector("u", u), b = vector("v", v);
    Vector out;
    py::gil_scoped_release free;
    const std::lock_guard<std::mutex> one_at_a_time(busy_);
    objective_->third_order(t, a, b, out);
    return out;
  }
  // dθ/dt of flow `kind` (gf, eom0..eom3) for `method` at lr, with its hyperparameters; a run's seed and
  // epoch where the field depends on them (sgd's batch order).
  Vector field(const py::object& kind, const py::object& lr, const py::object& theta, const py::object& method,
               const py::kwargs& kw) {
    const Vector t = vector("theta", theta);
    const FieldRequest r = request("field", name_argument(kind, "kind"), number_argument(lr, "lr"), name_argument(method, "method"), kw);
    const std::shared_ptr<CachedFlow> flow = flow_of(r);
    Vector out;
    py::gil_scoped_release free;
    const std::lock_guard<std::mutex> one_at_a_time(busy_);
    if (flow->flow->segment_steps() > 0) flow->flow->begin_segment(r.epoch);
    (*flow->flow)(t, out);
    return out;
  }
  // Where the flow starts from θ0 (θ0* for a method with memory).
  Vector start_point(const py::object& kind, const py::object& lr, const py::object& theta0, const py::object& method,
                     const py::kwargs& kw) {
    const Vector t = vector("theta0", theta0);
    const FieldRequest r =
        request("start_point", name_argument(kind, "kind"), number_argument(lr, "lr"), name_argument(method, "method"), kw);
    const std::shared_ptr<CachedFlow> flow = flow_of(r);
    py::gil_scoped_release free;
    const std::lock_guard<std::mutex> one_at_a_time(busy_);
    if (flow->flow->segment_steps() > 0) flow->flow->begin_segment(r.epoch);
    return flow->flow->start_point(t);
  }

 private:
  // θ-sized float64 values from anything numpy makes a flat array of, else ValueError naming the argument.
  Vector vector(const char* name, const py::object& o) const {
    const std::string expected = std::string(name) + ": expected " + std::to_string(n_params()) +
                                 " float64 values (the model's n_params), got ";
    if (o.is_none() || py::isinstance<py::str>(o) || py::isinstance<py::bytes>(o))
      bad(expected + py::repr(o).cast<std::string>());
    const py::array numbers = array_argument(o, name);
    const Array a = Array::ensure(numbers);
    if (!a) bad(expected + py::repr(o).cast<std::string>());
    if (a.ndim() != 1 || a.shape(0) != n_params()) bad(expected + "an array of shape " + shape_text(a));
    return Eigen::Map<const Vector>(a.data(), n_params());
  }

  // A flow as field() and start_point() name it: the config's [optimizer] and [flows] text (method, lr and
  // hyperparameters; kind), and the run's seed and epoch (keywords beside the hyperparameters).
  struct FieldRequest {
    StudyConfig config;
    std::string text;  // the flow's key: the INI text and the seed
    std::uint64_t seed = 0;
    long epoch = 0;
  };
  FieldRequest request(const std::string& function, const std::string& kind, double lr, const std::string& method,
                       const py::kwargs& kw) const {
    if (!(lr > 0 && std::isfinite(lr))) bad("lr: expected a finite learning rate > 0, got " + format_number(lr));
    FieldRequest r;
    std::ostringstream ini;
    ini << "[optimizer]\nmethod = " << method << "\nlr = " << format_number(lr) << "\nsteps = 1\n";
    for (const auto& [k, v] : kw) {
      const std::string key = py::str(k).cast<std::string>();
      if (key == "seed")
        r.seed = whole_number(v, "seed", seed_limit(), seed_range, function);
      else if (key == "epoch")
        r.epoch = static_cast<long>(whole_number(v, "epoch", py::int_(std::numeric_limits<long>::max()), "an integer epoch >= 0", function));
      else if (is_method_setting_key(key))
        ini << key << " = " << value_text(v, "optimizer." + key) << "\n";
      else  // other [optimizer] keys (steps, horizon, record_every) were taken as the stand-in config's
        bad(function + ": unknown keyword '" + key + "' (expected hyperparameters of the method (" + method_setting_keys_text() + "), seed or epoch)");
    }
    ini << "[flows]\nkinds = " << kind << "\n";
    ini << "[model]\nlayers = 2,2\n";  // a stand-in: only the [optimizer] and [flows] keys are read here
    r.config = cli::parse_config_text(ini.str(), function);
    if (r.config.flows.kinds.size() != 1) bad("kind: expected one flow kind, got '" + kind + "'");
    // The run's batch order: keywords of the method that reads optimizer.order, as a key of another method is refused.
    for (const char* key : {"seed", "epoch"})
      if (kw.contains(key) && !method_key(r.config.optimizer.method, "order"))
        bad(function + ": " + key + ": a keyword of sgd only (its batch order), got method '" + r.config.optimizer.method + "'");
    r.text = ini.str() + "seed = " + std::to_string(r.seed);
    return r;
  }

  struct CachedFlow {
    std::unique_ptr<Method> method;  // the flow's method (its table of coefficients lives here)
    std::unique_ptr<Flow> flow;
  };
  // The flow of a request, made once and kept among the last few used (an lr scan makes a new one per lr,
  // and sgd's keep its batches); shared so that an evaluation keeps its flow while another is made.
  std::shared_ptr<CachedFlow> flow_of(const FieldRequest& r) {
    for (auto it = flows_.begin(); it != flows_.end(); ++it)
      if (it->first == r.text) {
        flows_.splice(flows_.begin(), flows_, it);
        return flows_.front().second;
      }
    auto made = std::make_shared<CachedFlow>();
    const double lr = r.config.optimizer.lr.front();
    made->method = make_method(r.config.optimizer.method, {*objective_, lr, r.config.optimizer.settings, r.seed});
    made->flow = make_flow(r.config.flows.kinds.front(), {*objective_, *made->method, lr});
    flows_.emplace_front(r.text, made);
    if (flows_.size() > kept_flows) flows_.pop_back();
    return made;
  }

  static constexpr std::size_t kept_flows = 4;
  WholeVector whole_;
  // Evaluations run without the GIL and share the objective's buffers: one thread at a time.
  std::mutex busy_;
  std::unique_ptr<ModelObjective> objective_;
  std::list<std::pair<std::string, std::shared_ptr<CachedFlow>>> flows_;  // most recently used first
};

// MPI, once per process (a study may run many times; MPI cannot be initialised twice).
dist::Environment& mpi() {
  static std::unique_ptr<dist::Environment> environment = [] {
    int argc = 1;
    static char name[] = "eomlab";
    static char* args[] = {name, nullptr};
    char** argv = args;
    return std::make_unique<dist::Environment>(argc, argv);
  }();
  return *environment;
}

// INI text of a dict of sections {section: {key: value}} (lists become comma-separated).
std::string ini_of(const py::dict& config) {
  std::ostringstream ini;
  // Section and key names are words, as every key of the contract is: other text would be INI syntax.
  const auto word = [](const py::handle& name) {
    const std::string text = py::str(name).cast<std::string>();
    if (!py::isinstance<py::str>(name) || !is_word(text))
      bad("config: expected section and key names of a letter, then letters, digits and '_', got " +
          py::repr(name).cast<std::string>());
    return text;
  };
  for (const auto& [section, keys] : config) {
    if (!py::isinstance<py::dict>(keys)) bad("config: expected a dict of sections, each a dict of keys");
    ini << "[" << word(section) << "]\n";
    for (const auto& [key, value] : keys.cast<py::dict>()) {
      const std::string name = word(key);
      ini << name << " = " << list_text(value, py::str(section).cast<std::string>() + "." + name) << "\n";
    }
  }
  return ini.str();
}

// sgd's order of n samples in an epoch (flow/sgd.hpp), the one the binary's runs use.
py::array_t<std::int64_t> permutation(const py::object& seed_arg, const py::object& epoch_arg, const py::object& n_arg) {
  const py::int_ longest(std::numeric_limits<long>::max());
  const std::uint64_t seed =
      whole_number(seed_arg, "seed", seed_limit(), seed_range);
  const auto epoch = static_cast<long>(whole_number(epoch_arg, "epoch", longest, "an integer epoch >= 0"));
  const py::int_ samples(std::numeric_limits<int>::max());  // as many as a study may have (data.n_samples)
  const auto n = static_cast<Index>(whole_number(n_arg, "n", samples, "an integer number of samples in [0, 2147483647]"));
  const std::vector<Index> p = sgd_permutation(seed, epoch, n);
  py::array_t<std::int64_t> out(static_cast<py::ssize_t>(p.size()));
  std::copy(p.begin(), p.end(), out.mutable_data());
  return out;
}

// The command of run(): an INI file's path (parsed as the command line parses --config) or a dict of sections.
cli::Command study_command(const py::object& config, bool overwrite, bool resume) {
  if (overwrite && resume) bad("run: expected at most one of resume=True and overwrite=True, got both");
  if (py::isinstance<py::dict>(config)) {
    cli::Command cmd;
    cmd.config = cli::parse_config_text(ini_of(config.cast<py::dict>()), "config");
    cmd.overwrite = overwrite;
    cmd.resume = resume;
    return cmd;
  }
  if (!py::isinstance<py::str>(config) && !py::isinstance<py::bytes>(config) && !py::hasattr(config, "__fspath__"))
    bad("config: expected an INI file's path or a dict of sections, got " + py::repr(config).cast<std::string>());
  const std::string path = os_text(config, "config");
  if (path.find('\0') != std::string::npos) bad("config: expected a path without NUL characters, got " + py::repr(config).cast<std::string>());
  std::vector<std::string> args{"eomlab", "--config", path};
  if (overwrite) args.push_back("--overwrite");
  if (resume) args.push_back("--resume");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  try {
    return cli::parse_command_line(static_cast<int>(argv.size()), argv.data());
  } catch (const InputError& e) {
    const std::string message = e.what(), flag = "--config: ";  // the path is this function's argument
    bad(message.rfind(flag, 0) == 0 ? "config: " + message.substr(flag.size()) : message);
  }
}

// While it lives, what C++ writes to `stream` goes line by line to Python's sys.`name` (a notebook's cell, a
// captured stream) instead of past it to the process's file descriptor; each line takes the GIL for itself.
// Whole lines only, though std::cerr flushes at every <<: pybind11's scoped_ostream_redirect writes each
// piece (another thread's print could land inside a warning), decodes strictly and lets a failed write
// escape. Here bytes that are not UTF-8 (a path's) are shown escaped, and a line Python fails to write is
// lost, as a closed terminal's would be, while the study goes on.
class PythonLines : public std::streambuf {
 public:
  PythonLines(std::ostream& stream, const char* name)
      : stream_(stream), file_(py::module_::import("sys").attr(name)), before_(stream.rdbuf(this)) {}
  ~PythonLines() override {  // with or without the GIL
    py::gil_scoped_acquire hold;
    write(line_.size());  // a last line without its '\n' too
    stream_.rdbuf(before_);
    file_ = py::object();
  }
  PythonLines(const PythonLines&) = delete;
  PythonLines& operator=(const PythonLines&) = delete;

 protected:
  int overflow(int c) override {
    if (c == traits_type::eof()) return traits_type::not_eof(c);
    line_ += static_cast<char>(c);
    if (c == '\n') sync();
    return c;
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    line_.append(s, static_cast<std::size_t>(n));
    if (std::find(s, s + n, '\n') != s + n) sync();
    return n;
  }
  int sync() override {
    const std::size_t end = line_.rfind('\n');
    if (end != std::string::npos) write(end + 1);
    return 0;
  }

 private:
  // Writes line_'s first n characters to the file and drops them.
  void write(std::size_t n) {
    if (n == 0) return;
    py::gil_scoped_acquire hold;
    try {
      file_.attr("write")(shown(line_.data(), n));
      file_.attr("flush")();
    } catch (const py::error_already_set&) {
    }
    line_.erase(0, n);
  }

  std::ostream& stream_;
  py::object file_;
  std::streambuf* before_;
  std::string line_;
};

// A whole study in this process; returns its output directory. One study at a time (MPI and parallel
// HDF5 are not for several threads); a stop signal checkpoints it as on the command line, then has the
// effect it has in the program (Python's SIGINT: KeyboardInterrupt).
py::object run(const py::object& config, bool overwrite, bool resume) {
  const cli::Command cmd = study_command(config, overwrite, resume);
  mpi();
  static std::mutex one_study;
  int code = 0, signal = 0;
  bool interrupted_before = false;
  {
    py::gil_scoped_release free;
    const std::lock_guard<std::mutex> alone(one_study);
    std::optional<PythonLines> out, err;  // this study's alone, as std::cout is
    {
      py::gil_scoped_acquire hold;  // a Ctrl-C while this thread waited for its turn (or started MPI)
      interrupted_before = PyErr_CheckSignals() != 0;
      if (!interrupted_before) {  // (its exception stays set for the caller)
        out.emplace(std::cout, "stdout");
        err.emplace(std::cerr, "stderr");
      }
    }
    try {
      if (!interrupted_before) {
        {
          const StopSignalScope stops;
          code = run_study(cmd.config, {cmd.overwrite, cmd.resume, 0, 1, cli::canonical_config_text, "run(config, resume=True) continues them"},
                           dist::Comm::world());
          signal = stops.received();
        }
        // To the program's own handler, restored, while no other thread's study can take it for its own.
        if (signal != 0) std::raise(signal);
      }
    } catch (const InputError& e) {
      py::gil_scoped_acquire hold;
      std::string message = e.what();  // the command line's flags are this function's arguments
      for (const auto& [flag, argument] : {std::pair{"--resume", "resume=True"}, std::pair{"--overwrite", "overwrite=True"}})
        for (auto at = message.find(flag); at != std::string::npos; at = message.find(flag, at))
          message.replace(at, std::string(flag).size(), argument);
      bad(message);
    }
  }
  if (interrupted_before) throw py::error_already_set();
  if (signal != 0) {
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    throw std::runtime_error("eomlab.run: stopped by signal " + std::to_string(signal) +
                             "; the unfinished runs are checkpointed: run(config, resume=True) continues them");
  }
  if (code != 0) throw std::runtime_error("eomlab.run: the study ended with exit code " + std::to_string(code));
  return py::module_::import("os").attr("fsdecode")(py::bytes(cmd.config.output));  // the path as os.listdir gives it
}

}  // namespace

PYBIND11_MODULE(eomlab, m) {
  m.doc() = "eomlab: exact derivatives, the EoM flows of optimizers, and studies (DESIGN.md §3.9)";
  // A user's mistake is a ValueError with the program's one line, wherever it is found (this module's
  // calls only: other pybind11 modules keep their own translation).
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const InputError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
  py::class_<PyModel>(m, "Model")
      .def(py::init([](const py::kwargs& kw) { return PyModel::make(kw); }))
      .def_property_readonly("n_params", [](const PyModel& p) { return p.model->n_params(); })
      .def_property_readonly("architecture", [](const PyModel& p) { return p.model->architecture(); })
      .def_property_readonly("input_shape",
                             [](const PyModel& p) {
                               const Shape& s = p.model->input_shape();
                               return s.is_vector() ? py::make_tuple(s.size())
                                                    : py::make_tuple(s.channels, s.height, s.width);
                             })
      .def_property_readonly("layout",
                             [](const PyModel& p) {
                               py::list out;
                               for (const ParameterBlock& b : p.model->blocks())
                                 out.append(py::dict(py::arg("name") = b.name, py::arg("offset") = b.offset,
                                                     py::arg("size") = b.size, py::arg("rows") = b.rows,
                                                     py::arg("cols") = b.cols));
                               return out;
                             })
      .def("initial_parameters",
           [](const PyModel& p, const py::object& seed) {
             return p.model->initial_parameters(whole_number(seed, "seed", seed_limit(), seed_range, "initial_parameters"));
           },
           py::arg("seed") = 0)
      .def("__repr__", [](const PyModel& p) { return "eomlab.Model(" + p.model->description() + ")"; });
  py::class_<PyObjective>(m, "Objective")
      .def(py::init([](const PyModel& model, const py::object& x, const py::object& y, const py::object& weight_decay,
                       const py::kwargs& kw) {
             for (const auto& [k, v] : kw)
               bad("Objective: unknown argument '" + py::str(k).cast<std::string>() + "' (expected model, X, y, weight_decay)");
             return std::make_unique<PyObjective>(model, array_argument(x, "X"), array_argument(y, "y"),
                                                  number_argument(weight_decay, "weight_decay"));
           }),
           py::arg("model"), py::arg("X"), py::arg("y"), py::arg("weight_decay") = 0.0)
      .def_property_readonly("n_params", &PyObjective::n_params)
      .def("value", &PyObjective::value, py::arg("theta"))
      .def("gradient", &PyObjective::gradient, py::arg("theta"))
      .def("hvp", &PyObjective::hvp, py::arg("theta"), py::arg("v"))
      .def("third_order", &PyObjective::third_order, py::arg("theta"), py::arg("u"), py::arg("v"))
      .def("field", &PyObjective::field, py::arg("kind"), py::arg("lr"), py::arg("theta"), py::arg("method") = "gd")
      .def("start_point", &PyObjective::start_point, py::arg("kind"), py::arg("lr"), py::arg("theta0"),
           py::arg("method") = "gd");
  // eomlab.Study is the analysis package's reader (eomlab_analysis, beside the module in the build tree
  // and in an install), imported on first use.
  m.def("__getattr__", [](const std::string& name) -> py::object {
    if (name == "Study") return py::module_::import("eomlab_analysis.load").attr("Study");
    throw py::attribute_error("module 'eomlab' has no attribute '" + name + "'");
  });
  m.def("__dir__", [m]() {
    py::list names = m.attr("__dict__").attr("keys")();
    names.append("Study");
    return names;
  });
  m.def("sgd_permutation", &permutation, py::arg("seed"), py::arg("epoch"), py::arg("n"),
        "sgd's order of the n samples in `epoch` for a run's `seed` (the run file's seed attribute; order = fixed "
        "uses epoch 0 throughout): batch j of the epoch is samples p[j*b:(j+1)*b].");
  m.def("run", &run, py::arg("config"), py::arg("overwrite") = false, py::arg("resume") = false,
        "Runs a study (an INI path or a dict of sections) in this process; returns its output directory.");
}
