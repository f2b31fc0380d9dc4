#include "io/checkpoint.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <filesystem>

#include "core/fingerprint.hpp"
#include "io/h5.hpp"

namespace eomlab::io {
namespace {

using h5::check;
using h5::Handle;

// A [rows, P] dataset of which this rank holds columns [begin, end) of every row (rows == 1: [P]), written
// row by row from the vectors themselves: a copy of all rows at once (a flow's 25 integrator vectors) was
// the largest of a checkpoint's transient memory (an adversarial review measured 2.3x a run's peak).
void write_sliced(hid_t loc, const std::string& name, const std::vector<const Vector*>& rows, const SliceExchange& slices,
                  hid_t dxpl) {
  const bool matrix = rows.size() != 1;
  const hsize_t nrows = rows.size(), p = static_cast<hsize_t>(slices.global_size()),
                n = static_cast<hsize_t>(slices.local_size()), begin = static_cast<hsize_t>(slices.begin());
  hsize_t dims[2] = {nrows, p};
  const int rank = matrix ? 2 : 1;
  if (!matrix) dims[0] = p;
  Handle space(H5Screate_simple(rank, dims, nullptr), H5Sclose, "H5Screate_simple", name);
  Handle ds(H5Dcreate2(loc, name.c_str(), H5T_NATIVE_DOUBLE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
            "H5Dcreate", name);
  Handle mem(H5Screate_simple(1, &n, nullptr), H5Sclose, "H5Screate_simple", name);
  for (std::size_t r = 0; r < rows.size(); ++r) {  // collective: every rank writes every row
    hsize_t start[2] = {r, begin}, count[2] = {1, n};
    if (!matrix) start[0] = begin, count[0] = n;
    if (n > 0)
      check(H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr), "H5Sselect_hyperslab", name);
    h5::select_nothing_unless(n > 0, space, mem, name);
    check(H5Dwrite(ds, H5T_NATIVE_DOUBLE, mem, space, dxpl, rows[r]->data()), "H5Dwrite", name);
  }
}

std::vector<Vector> read_sliced(hid_t loc, const std::string& name, const SliceExchange& slices, const std::string& path) {
  Handle ds = h5::open_dataset(loc, name, path);
  const auto dims = h5::dataset_shape(ds, path + ":" + name);
  if (dims.size() != 1 && dims.size() != 2) throw Error(name + " is neither a vector nor a matrix");
  const bool matrix = dims.size() == 2;
  const hsize_t nrows = matrix ? dims[0] : 1, n = static_cast<hsize_t>(slices.local_size()),
                begin = static_cast<hsize_t>(slices.begin());
  if ((matrix ? dims[1] : dims[0]) != static_cast<hsize_t>(slices.global_size()))
    throw Error("checkpoint '" + path + "': " + name + " does not match the model's parameter count");
  hsize_t start[2] = {0, begin}, count[2] = {nrows, n};
  if (!matrix) start[0] = begin, count[0] = n;
  Handle space(H5Dget_space(ds), H5Sclose, "H5Dget_space", name);
  Handle mem(H5Screate_simple(matrix ? 2 : 1, count, nullptr), H5Sclose, "H5Screate_simple", name);
  std::vector<double> packed(nrows * n);
  if (n > 0)
    check(H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr), "H5Sselect_hyperslab", name);
  h5::select_nothing_unless(n > 0, space, mem, name);
  check(H5Dread(ds, H5T_NATIVE_DOUBLE, mem, space, H5P_DEFAULT, packed.data()), "H5Dread", path + ":" + name);
  std::vector<Vector> rows(nrows, Vector(static_cast<Index>(n)));
  for (std::size_t r = 0; r < nrows; ++r)
    std::copy(packed.begin() + static_cast<long>(r * n), packed.begin() + static_cast<long>((r + 1) * n), rows[r].data());
  return rows;
}

// Small arrays of scalars: every rank holds the same values; rank 0 writes them.
void write_scalars(hid_t loc, const std::string& name, const std::vector<double>& values, bool writer, hid_t dxpl) {
  hsize_t n = values.size();
  Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose, "H5Screate_simple", name);
  Handle ds(H5Dcreate2(loc, name.c_str(), H5T_NATIVE_DOUBLE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
            "H5Dcreate", name);
  Handle mem(H5Screate_simple(1, &n, nullptr), H5Sclose, "H5Screate_simple", name);
  h5::select_nothing_unless(writer, space, mem, name);
  check(H5Dwrite(ds, H5T_NATIVE_DOUBLE, mem, space, dxpl, values.data()), "H5Dwrite", name);
}

std::vector<double> read_scalars(hid_t loc, const std::string& name, const std::string& path) {
  Handle ds = h5::open_dataset(loc, name, path);
  const auto dims = h5::dataset_shape(ds, path + ":" + name);
  // Read whole into `values`: any other shape (a damaged header) would overrun it.
  if (dims.size() != 1) throw Error(name + " is not a list of values");
  std::vector<double> values(dims[0]);
  check(H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), "H5Dread", path + ":" + name);
  return values;
}

// The scalars of a checkpoint and of one of its flows, as stored. The preconditioned sharpness's two
// follow the first 6 only once it was measured, so every other checkpoint is as it was before them.
std::vector<double> scalars_of(const DriverCheckpoint& c) {
  std::vector<double> s = {static_cast<double>(c.step), static_cast<double>(c.records), c.max_lr_sharpness,
                           static_cast<double>(c.first_unstable_step), static_cast<double>(c.flows.size()),
                           c.sharpness_start.size() > 0 ? 1.0 : 0.0};
  if (c.preconditioned_sharpness_start.size() > 0 || c.max_lr_preconditioned_sharpness != 0.0)
    s.insert(s.end(), {c.max_lr_preconditioned_sharpness, c.preconditioned_sharpness_start.size() > 0 ? 1.0 : 0.0});
  return s;
}

std::vector<double> method_scalars(const MethodState& m) {
  std::vector<double> values;
  for (const auto& [name, value] : m.scalars) values.push_back(value);
  return values;
}

// "a,b": the names of a method's vectors or scalars as stored in the attributes of /method.
template <class Named>
std::string names_of(const Named& named) {
  std::string out;
  for (const auto& item : named) out += (out.empty() ? "" : ",") + item.first;
  return out;
}

std::vector<std::string> split_names(const std::string& text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t comma = std::min(text.find(',', at), text.size());
    out.push_back(text.substr(at, comma - at));
    at = comma + 1;
  }
  return out;
}

std::vector<double> scalars_of(const DriverCheckpoint::Flow& flow) {
  return {flow.failed ? 1.0 : 0.0, static_cast<double>(flow.evaluations)};
}

// The checksum of the values a resume restores: a Fingerprint of them; total() sums the ranks' parts
// (group rank 0 adds the scalars, which every rank holds, each rank its slices).
class Checksum : public Fingerprint {
 public:
  void add_values(const std::string& name, const std::vector<double>& values) { add(name, 0, values.data(), values.size()); }
  // Sums the ranks' parts exactly: 32-bit halves, whose sums over any group fit a double's mantissa.
  std::uint64_t total(const dist::Comm& group) const {
    const std::uint64_t sum = value();
    double halves[2] = {static_cast<double>(sum >> 32), static_cast<double>(sum & 0xFFFFFFFFULL)};
    group.sum_in_place(halves, 2);
    return (static_cast<std::uint64_t>(halves[0]) << 32) + static_cast<std::uint64_t>(halves[1]);
  }
};

// The checksum of everything a resume restores from `c` (this rank's slices, the shared scalars).
std::uint64_t checksum(const DriverCheckpoint& c, const dist::Comm& group, const SliceExchange& slices) {
  Checksum sum;
  const auto begin = static_cast<std::uint64_t>(slices.begin()), p = static_cast<std::uint64_t>(slices.global_size());
  auto sliced = [&](const std::string& name, const Vector& v, std::uint64_t row) {
    sum.add(name, row * p + begin, v.data(), static_cast<std::size_t>(v.size()));
  };
  if (group.rank() == 0) {
    sum.add_values("scalars", scalars_of(c));
    sum.add_values("wall_seconds", c.wall_seconds);
    sum.add_text("method/vectors", names_of(c.method.vectors));
    sum.add_text("method/scalar_names", names_of(c.method.scalars));
    sum.add_values("method/scalars", method_scalars(c.method));
  }
  for (const auto& [name, v] : c.method.vectors) sliced("method/" + name, v, 0);
  sliced("sharpness_start", c.sharpness_start, 0);
  sliced("preconditioned_sharpness_start", c.preconditioned_sharpness_start, 0);
  for (std::size_t f = 0; f < c.flows.size(); ++f) {
    const DriverCheckpoint::Flow& flow = c.flows[f];
    const std::string g = "flow" + std::to_string(f) + "/";
    if (group.rank() == 0) {
      sum.add_text(g + "status", flow.status);
      sum.add_values(g + "scalars", scalars_of(flow));
      sum.add_values(g + "integrator_scalars", flow.integrator.scalars);
    }
    sliced(g + "theta", flow.theta, 0);
    for (std::size_t r = 0; r < flow.integrator.vectors.size(); ++r)
      sliced(g + "integrator_vectors", flow.integrator.vectors[r], r);
  }
  return sum.total(group);
}

// What is wrong with the scalars of a checkpoint read back, or "".
std::string scalars_problem(const DriverCheckpoint& c, const CheckpointExpectation& e) {
  if (state_signature(c.method) != e.method_state)
    return "its method state (" + state_signature(c.method) + ") is not the run's (" + e.method_state + ")";
  if (c.flows.size() != e.flows || c.wall_seconds.size() != e.flows + 1)
    return "it holds " + std::to_string(c.flows.size()) + " flows, expected " + std::to_string(e.flows);
  if (c.step < 0 || c.step > e.steps)
    return "its step " + std::to_string(c.step) + " is outside 0.." + std::to_string(e.steps);
  // Records are made at steps 0, record_every, 2 record_every, ...: those before `step` (a stop inside
  // the record of `step` checkpoints before it is made, at step 0 too).
  const long records = (c.step + e.record_every - 1) / e.record_every;
  if (c.records != records)
    return "its record count " + std::to_string(c.records) + " does not match its step " + std::to_string(c.step) +
           " (expected " + std::to_string(records) + ")";
  return "";
}

}  // namespace

void write_checkpoint(const std::string& path, const dist::Comm& group, const SliceExchange& slices,
                      const DriverCheckpoint& c, const CheckpointOrigin& origin) {
  h5::silence_error_stack();
  const std::string temp = path + ".tmp";
  const bool writer = group.rank() == 0;
  h5::remove_before_create(temp, group);
  {
    Handle fapl = h5::collective_file_access(group, temp);
    Handle file(H5Fcreate(temp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl), H5Fclose, "H5Fcreate", temp,
                Handle::Collective{});
    h5::naming_file(temp, [&] {
      Handle dxpl = h5::collective_transfer(temp);
      write_scalars(file, "scalars", scalars_of(c), writer, dxpl);
      write_scalars(file, "wall_seconds", c.wall_seconds, writer, dxpl);
      {
        Handle method(H5Gcreate2(file, "method", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, "H5Gcreate", "method");
        h5::write_string_attribute(method, "vectors", names_of(c.method.vectors));
        h5::write_string_attribute(method, "scalar_names", names_of(c.method.scalars));
        write_scalars(method, "scalars", method_scalars(c.method), writer, dxpl);
        for (const auto& [name, v] : c.method.vectors) write_sliced(method, name, {&v}, slices, dxpl);
      }
      if (c.sharpness_start.size() > 0) write_sliced(file, "sharpness_start", {&c.sharpness_start}, slices, dxpl);
      if (c.preconditioned_sharpness_start.size() > 0)
        write_sliced(file, "preconditioned_sharpness_start", {&c.preconditioned_sharpness_start}, slices, dxpl);
      for (std::size_t f = 0; f < c.flows.size(); ++f) {
        const DriverCheckpoint::Flow& flow = c.flows[f];
        const std::string g = "flow" + std::to_string(f);
        Handle group_handle(H5Gcreate2(file, g.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, "H5Gcreate", g);
        h5::write_string_attribute(group_handle, "status", flow.status);
        write_scalars(group_handle, "scalars", scalars_of(flow), writer, dxpl);
        write_scalars(group_handle, "integrator_scalars", flow.integrator.scalars, writer, dxpl);
        write_sliced(group_handle, "theta", {&flow.theta}, slices, dxpl);
        std::vector<const Vector*> rows;
        for (const Vector& v : flow.integrator.vectors) rows.push_back(&v);
        write_sliced(group_handle, "integrator_vectors", rows, slices, dxpl);
      }
      h5::write_int_attribute(file, "checksum", static_cast<long long>(checksum(c, group, slices)));
      h5::write_string_attribute(file, "run_id", origin.run_id);
      h5::write_string_attribute(file, "config", origin.config);
      h5::write_string_attribute(file, "inputs", origin.inputs);
    });
    check(H5Fflush(file, H5F_SCOPE_GLOBAL), "H5Fflush", temp);
  }
  group.barrier();  // every rank has closed the temporary file
  if (writer && std::rename(temp.c_str(), path.c_str()) != 0)
    throw Error("cannot move checkpoint '" + temp + "' into place: " + std::strerror(errno));
  group.barrier();
}

namespace {

// The method's named state under /method.
MethodState read_method(hid_t file, const std::string& path, const SliceExchange& slices) {
  Handle group(H5Gopen2(file, "method", H5P_DEFAULT), H5Gclose, "H5Gopen", path + ":method");
  MethodState m;
  for (const std::string& name : split_names(h5::read_string_attribute(group, "vectors", path + ":method")))
    m.vectors.emplace_back(name, read_sliced(group, name, slices, path)[0]);
  const std::vector<std::string> names = split_names(h5::read_string_attribute(group, "scalar_names", path + ":method"));
  const std::vector<double> values = read_scalars(group, "scalars", path);
  if (values.size() != names.size()) throw Error("malformed method scalars");
  for (std::size_t i = 0; i < names.size(); ++i) m.scalars.emplace_back(names[i], values[i]);
  return m;
}

// This rank's part of the checkpoint at `file`, and the checksum recorded with it.
DriverCheckpoint read_parts(hid_t file, const std::string& path, const SliceExchange& slices,
                            std::uint64_t& recorded) {
  if (H5Aexists(file, "checksum") <= 0) throw Error("it has no checksum: written by an older eomlab");
  recorded = static_cast<std::uint64_t>(h5::read_int_attribute(file, "checksum", path));
  DriverCheckpoint c;
  const std::vector<double> s = read_scalars(file, "scalars", path);
  if (s.size() != 6 && s.size() != 8) throw Error("malformed scalars");
  c.step = static_cast<long>(s[0]);
  c.records = static_cast<long>(s[1]);
  c.max_lr_sharpness = s[2];
  c.first_unstable_step = static_cast<long>(s[3]);
  c.wall_seconds = read_scalars(file, "wall_seconds", path);
  c.method = read_method(file, path, slices);
  if (s[5] != 0.0) c.sharpness_start = read_sliced(file, "sharpness_start", slices, path)[0];
  if (s.size() == 8) {
    c.max_lr_preconditioned_sharpness = s[6];
    if (s[7] != 0.0)
      c.preconditioned_sharpness_start = read_sliced(file, "preconditioned_sharpness_start", slices, path)[0];
  }
  if (!(s[4] >= 0 && s[4] <= 64)) throw Error("malformed flow count");
  for (long f = 0; f < static_cast<long>(s[4]); ++f) {
    const std::string g = "flow" + std::to_string(f);
    Handle group_handle(H5Gopen2(file, g.c_str(), H5P_DEFAULT), H5Gclose, "H5Gopen", path + ":" + g);
    DriverCheckpoint::Flow flow;
    flow.status = h5::read_string_attribute(group_handle, "status", path + ":" + g);
    const std::vector<double> fs = read_scalars(group_handle, "scalars", path);
    flow.failed = fs.at(0) != 0.0;
    flow.evaluations = static_cast<long>(fs.at(1));
    flow.integrator.scalars = read_scalars(group_handle, "integrator_scalars", path);
    flow.theta = read_sliced(group_handle, "theta", slices, path)[0];
    flow.integrator.vectors = read_sliced(group_handle, "integrator_vectors", slices, path);
    c.flows.push_back(std::move(flow));
  }
  return c;
}

}  // namespace

CheckpointRead read_checkpoint(const std::string& path, const dist::Comm& group, const SliceExchange& slices,
                               const CheckpointExpectation& expected) {
  h5::silence_error_stack();
  if (!group.all_true(std::filesystem::exists(path))) return {};
  CheckpointRead result;
  std::uint64_t recorded = 0;
  std::string run_id, inputs;
  // Reads are independent: a rank whose reads fail still closes the file with the others (the close is
  // collective), and the ranks agree on the verdict.
  try {
    Handle fapl = h5::collective_file_access(group, path);
    Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl), H5Fclose, "H5Fopen", path);
    try {
      result.checkpoint = read_parts(file, path, slices, recorded);
      if (H5Aexists(file, "run_id") <= 0) throw Error("it names no run: written by an older eomlab");
      run_id = h5::read_string_attribute(file, "run_id", path);
      if (H5Aexists(file, "config") > 0) result.config = h5::read_string_attribute(file, "config", path);
      inputs = H5Aexists(file, "inputs") > 0 ? h5::read_string_attribute(file, "inputs", path) : expected.inputs;
    } catch (const Error& e) {
      result.problem = std::string("cannot read it (") + e.what() + ")";
    }
  } catch (const Error& e) {
    result.problem = std::string("cannot open it (") + e.what() + ")";
  }
  if (!group.all_true(result.problem.empty())) {
    if (result.problem.empty()) result.problem = "another rank of the run cannot read it";
  } else if (checksum(*result.checkpoint, group, slices) != recorded) {
    result.problem = "its data do not match its checksum (corrupted)";
  } else if (run_id != expected.run_id) {
    result.problem = "it is the checkpoint of run '" + run_id + "', not of '" + expected.run_id + "'";
  } else if (inputs != expected.inputs && (expected.older_inputs.empty() || inputs != expected.older_inputs)) {
    result.problem = "it was computed from other inputs (" + inputs + "), not the run's (" + expected.inputs +
                     "): another study's, or data edited since";
  } else {
    result.problem = scalars_problem(*result.checkpoint, expected);
  }
  if (!result.problem.empty()) result.checkpoint.reset();
  return result;
}

}  // namespace eomlab::io
