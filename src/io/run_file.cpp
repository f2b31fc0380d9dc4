#include "io/run_file.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <exception>
#include <map>

#include "io/h5.hpp"

namespace eomlab::io {
namespace {

using h5::check;
using h5::Handle;

constexpr hsize_t record_chunk = 256;
constexpr hsize_t theta_chunk = 1 << 16;

// One row of a table of named integer tuples (/model/layout and its kin).
struct TableRow {
  std::string name;
  std::array<long long, 4> values;
};

struct PackedRow {
  char name[64];
  long long values[4];
};

// A compound table (name, fields...) written by `writer` (collective over the file's ranks).
void write_table(hid_t loc, const std::string& path, const std::vector<std::string>& fields,
                 const std::vector<TableRow>& rows, bool writer, hid_t dxpl) {
  Handle name_type = h5::scalar_string_type(sizeof(PackedRow::name));
  Handle row_type(H5Tcreate(H5T_COMPOUND, sizeof(PackedRow)), H5Tclose, "H5Tcreate", path);
  check(H5Tinsert(row_type, "name", HOFFSET(PackedRow, name), name_type), "H5Tinsert", path);
  for (std::size_t f = 0; f < fields.size(); ++f)
    check(H5Tinsert(row_type, fields[f].c_str(), HOFFSET(PackedRow, values) + f * sizeof(long long), H5T_NATIVE_LLONG),
          "H5Tinsert", path);
  std::vector<PackedRow> packed(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    packed[i] = PackedRow{};
    std::strncpy(packed[i].name, rows[i].name.c_str(), sizeof packed[i].name - 1);
    std::copy(rows[i].values.begin(), rows[i].values.end(), packed[i].values);
  }
  hsize_t n = packed.size();
  Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose, "H5Screate_simple", path);
  Handle ds(H5Dcreate2(loc, path.c_str(), row_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
            "H5Dcreate", path);
  Handle mem(H5Screate_simple(1, &n, nullptr), H5Sclose, "H5Screate_simple", path);
  h5::select_nothing_unless(writer, space, mem, path);
  check(H5Dwrite(ds, row_type, mem, space, dxpl, packed.data()), "H5Dwrite", path);
}

Handle create_group(hid_t loc, const std::string& name) {
  return Handle(H5Gcreate2(loc, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, "H5Gcreate", name);
}

// An extendible float64/int64 dataset [R] or [R, width], appended one row per record.
class RecordSeries {
 public:
  RecordSeries(hid_t file, const std::string& name, hid_t type, hsize_t width)
      : name_(name), type_(type), width_(width) {
    const int rank = width == 0 ? 1 : 2;
    hsize_t dims[2] = {0, width};
    hsize_t maxdims[2] = {H5S_UNLIMITED, width};
    // Chunks of up to 2^16 values: whole rows of θ when they fit, many records of small series.
    const hsize_t row = std::min<hsize_t>(std::max<hsize_t>(width, 1), theta_chunk);
    const hsize_t rows = width == 0 ? record_chunk : std::max<hsize_t>(1, std::min<hsize_t>(record_chunk, theta_chunk / row));
    hsize_t chunk[2] = {rows, row};
    Handle space(H5Screate_simple(rank, dims, maxdims), H5Sclose, "H5Screate_simple", name);
    Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "H5Pcreate", name);
    check(H5Pset_chunk(dcpl, rank, chunk), "H5Pset_chunk", name);
    Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose, "H5Pcreate", name);
    check(H5Pset_create_intermediate_group(lcpl, 1), "H5Pset_create_intermediate_group", name);
    dataset_ = Handle(H5Dcreate2(file, name.c_str(), type, space, lcpl, dcpl, H5P_DEFAULT), H5Dclose, "H5Dcreate", name);
  }

  // Opens an existing series and cuts it back to `rows` rows.
  RecordSeries(hid_t file, const std::string& name, hid_t type, hsize_t width, hsize_t rows)
      : name_(name), type_(type), width_(width) {
    dataset_ = h5::open_dataset(file, name, "run file");
    const auto dims = h5::dataset_shape(dataset_, name);
    if (dims.empty() || dims[0] < rows || (width > 0 && (dims.size() != 2 || dims[1] != width)))
      throw Error("run file dataset " + name + " does not match the checkpoint (" + std::to_string(rows) + " records)");
    hsize_t cut[2] = {rows, width};
    check(H5Dset_extent(dataset_, cut), "H5Dset_extent", name);
  }

  // Collective: every rank calls; only `writer` contributes the row.
  void append(hsize_t row, const void* data, bool writer, hid_t dxpl) {
    append(row, data, writer ? std::max<hsize_t>(width_, 1) : 0, 0, dxpl);
  }

  // Collective: each rank contributes `count` entries of the row from column `first` (0 entries: none).
  void append(hsize_t row, const void* data, hsize_t count_columns, hsize_t first, hid_t dxpl) {
    const int rank = width_ == 0 ? 1 : 2;
    hsize_t dims[2] = {row + 1, width_};
    check(H5Dset_extent(dataset_, dims), "H5Dset_extent", name_);
    Handle file_space(H5Dget_space(dataset_), H5Sclose, "H5Dget_space", name_);
    hsize_t start[2] = {row, first};
    hsize_t count[2] = {1, width_ == 0 ? 1 : std::max<hsize_t>(count_columns, 1)};
    Handle mem_space(H5Screate_simple(rank, count, nullptr), H5Sclose, "H5Screate_simple", name_);
    if (count_columns > 0)
      check(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, nullptr, count, nullptr), "H5Sselect_hyperslab", name_);
    h5::select_nothing_unless(count_columns > 0, file_space, mem_space, name_);
    check(H5Dwrite(dataset_, type_, mem_space, file_space, dxpl, data), "H5Dwrite", name_);
  }

 private:
  std::string name_;
  hid_t type_;
  hsize_t width_;
  Handle dataset_;
};

// The record series of one trajectory: θ (if stored), then one per observable in layout order.
struct TrajectorySeries {
  std::unique_ptr<RecordSeries> theta;
  std::vector<std::unique_ptr<RecordSeries>> values;
};

// One record series of a run file: its path, type and row width (0: [R]), and where RunFile keeps it.
struct SeriesSpec {
  std::string name;
  hid_t type;
  hsize_t width;
  std::unique_ptr<RecordSeries>* slot;
};

// Every record series of a run file with `header` (`series`: one per trajectory).
std::vector<SeriesSpec> series_specs(const RunFileHeader& header, std::unique_ptr<RecordSeries>& step,
                                     std::unique_ptr<RecordSeries>& time, std::vector<TrajectorySeries>& series) {
  std::vector<SeriesSpec> specs{{"/step", H5T_NATIVE_INT64, 0, &step}, {"/time", H5T_NATIVE_DOUBLE, 0, &time}};
  for (std::size_t i = 0; i < header.records.size(); ++i) {
    const TrajectoryLayout& traj = header.records[i];
    TrajectorySeries& s = series[i];
    if (header.store_theta)
      specs.push_back({"/trajectories/" + traj.name + "/theta", H5T_NATIVE_DOUBLE, static_cast<hsize_t>(header.n_params), &s.theta});
    s.values.resize(traj.series.size());
    for (std::size_t k = 0; k < traj.series.size(); ++k)
      specs.push_back({"/observables/" + traj.name + "/" + traj.series[k].name, H5T_NATIVE_DOUBLE,
                       static_cast<hsize_t>(traj.series[k].width), &s.values[k]});
  }
  return specs;
}

// A trajectory's statistics as attributes of /observables/<name>. Written with placeholder values when the
// file is made, so later writes (each finish, also after a resume) overwrite them in place and never
// change the shape of the group's metadata in the parallel file.
void write_statistics(hid_t root, const TrajectorySummary& t) {
  const std::string name = "/observables/" + t.name;
  Handle group(H5Gopen2(root, name.c_str(), H5P_DEFAULT), H5Gclose, "H5Gopen", name);
  h5::write_int_attribute(group, "evaluations", t.evaluations);
  h5::write_double_attribute(group, "wall_seconds", t.wall_seconds);
  h5::write_int_attribute(group, "accepted_steps", t.accepted_steps);
  h5::write_int_attribute(group, "rejected_steps", t.rejected_steps);
  h5::write_string_attribute(group, "status", t.status);
}

// "a,b,c"
std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ",") + n;
  return out;
}

// The names of the trajectories and of each one's series, as attributes (the analysis reads them).
void write_names(hid_t root, const RunFileHeader& header) {
  std::vector<std::string> trajectories, flows;
  for (const TrajectoryLayout& t : header.records) trajectories.push_back(t.name);
  flows.assign(trajectories.begin() + 1, trajectories.end());
  h5::write_string_attribute(root, "method", trajectories.front());
  h5::write_string_attribute(root, "discrete_trajectory", trajectories.front());
  h5::write_string_attribute(root, "flows", joined(flows));
  h5::write_string_attribute(root, "trajectories", joined(trajectories));
  h5::write_string_attribute(root, "rates", header.rates ? "on" : "off");
  for (const TrajectoryLayout& t : header.records) {
    std::vector<std::string> series;
    for (const SeriesShape& s : t.series) series.push_back(s.name);
    const std::string name = "/observables/" + t.name;
    Handle group(H5Gopen2(root, name.c_str(), H5P_DEFAULT), H5Gclose, "H5Gopen", name);
    h5::write_string_attribute(group, "series", joined(series));
    group.reset();
    write_statistics(root, TrajectorySummary{t.name});
  }
}

}  // namespace

struct RunFile::Impl {
  void set_up(const std::string& file_path, const dist::Comm& group, const RunFileHeader& run_header) {
    h5::silence_error_stack();
    path = file_path;
    header = run_header;
    writer = group.rank() == 0;
    dxpl = h5::collective_transfer(path);
  }

  // Creates every record series, or (resuming) opens them and cuts them back to `records` rows.
  void open_series(bool existing) {
    series.resize(header.records.size());
    for (const SeriesSpec& spec : series_specs(header, step, time, series))
      *spec.slot = existing ? std::make_unique<RecordSeries>(file, spec.name, spec.type, spec.width, records)
                            : std::make_unique<RecordSeries>(file, spec.name, spec.type, spec.width);
  }

  std::string path;
  bool writer = false;  // group rank 0 holds the data it writes (θ is replicated in the group)
  Handle file, dxpl;
  RunFileHeader header;
  std::unique_ptr<RecordSeries> step, time;
  std::vector<TrajectorySeries> series;
  hsize_t records = 0;

  void close() {
    series.clear();
    step.reset();
    time.reset();
    dxpl.reset();
    file.reset();
  }
};

RunFile::RunFile(const std::string& path, const dist::Comm& group, const RunFileHeader& header)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.set_up(path, group, header);
  h5::remove_before_create(path, group);
  Handle fapl = h5::collective_file_access(group, path);
  m.file = Handle(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl), H5Fclose, "H5Fcreate", path,
                  Handle::Collective{});

  h5::naming_file(path, [&] {
    hid_t root = m.file;
    for (const auto& [key, value] : header.provenance) h5::write_string_attribute(root, key, value);
    for (const auto& [key, value] : header.inputs) h5::write_string_attribute(root, key, value);
    h5::write_string_attribute(root, "config", header.config_text);
    h5::write_string_attribute(root, "run_id", header.run_id);
    h5::write_double_attribute(root, "lr", header.lr);
    h5::write_int_attribute(root, "seed", static_cast<long long>(header.seed));
    h5::write_double_attribute(root, "weight_decay", header.weight_decay);
    h5::write_int_attribute(root, "ranks_per_run", header.ranks_per_run);
    h5::write_int_attribute(root, "n_params", header.n_params);
    h5::write_int_attribute(root, "n_samples", header.n_samples);
    for (const auto& [key, value] : header.method_numbers) h5::write_double_attribute(root, key, value);
    for (const auto& [key, value] : header.method_integers) h5::write_int_attribute(root, key, value);
    for (const auto& [key, value] : header.method_texts) h5::write_string_attribute(root, key, value);
    h5::write_string_attribute(root, "status", "running");

    {
      Handle model = create_group(root, "/model");
      h5::write_string_attribute(model, "architecture", header.architecture);
      h5::write_string_attribute(model, "input_shape", header.input_shape);
      h5::write_int_attribute(model, "couples_samples", header.couples_samples ? 1 : 0);
      const std::vector<std::string> block_fields{"offset", "size", "rows", "cols"};
      std::vector<TableRow> rows;
      for (const ParameterBlock& b : header.observables.blocks) rows.push_back({b.name, {b.offset, b.size, b.rows, b.cols}});
      write_table(model, "/model/layout", block_fields, rows, m.writer, m.dxpl);
      rows.clear();
      for (const ParameterBlock& b : header.observables.scale_invariant)
        rows.push_back({b.name, {b.offset, b.size, b.rows, b.cols}});
      if (!rows.empty()) write_table(model, "/model/scale_invariant_blocks", block_fields, rows, m.writer, m.dxpl);
      rows.clear();
      for (const ParameterSum& t : header.observables.translation) rows.push_back({t.name, {t.offset, t.stride, t.count, 0}});
      if (!rows.empty())
        write_table(model, "/model/translation_components", {"offset", "stride", "count"}, rows, m.writer, m.dxpl);
    }

    m.open_series(false);
    write_names(root, header);
  });
  check(H5Fflush(m.file, H5F_SCOPE_GLOBAL), "H5Fflush", path);
}

RunFile::RunFile(const std::string& path, const dist::Comm& group, const RunFileHeader& header, long records,
                 const std::string& resumed_at)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.set_up(path, group, header);
  m.records = static_cast<hsize_t>(records);
  Handle fapl = h5::collective_file_access(group, path);
  m.file = Handle(H5Fopen(path.c_str(), H5F_ACC_RDWR, fapl), H5Fclose, "H5Fopen", path, Handle::Collective{});
  h5::naming_file(path, [&] {
    m.open_series(true);
    h5::write_string_attribute(m.file, "status", "running");
    h5::write_string_attribute(m.file, "resumed", resumed_at);
    h5::write_int_attribute(m.file, "n_samples", header.n_samples);  // absent in files begun before de9ac9c
    for (const auto& [key, value] : header.inputs)  // absent in files begun before 168ee9b
      if (check(H5Aexists(m.file, key.c_str()), "H5Aexists", key) <= 0) h5::write_string_attribute(m.file, key, value);
    // The root's provenance is the run's first invocation's; each resume adds a line of its own (another
    // job, host or build may continue the run).
    std::string line = resumed_at + ":";
    for (const auto& [key, value] : header.provenance)
      if (key != "study" && key != "created") line += " " + key + "=" + value + ";";
    const std::string before = check(H5Aexists(m.file, "resume_provenance"), "H5Aexists", "resume_provenance") > 0
                                   ? h5::read_string_attribute(m.file, "resume_provenance", path) + "\n"
                                   : std::string();
    h5::write_string_attribute(m.file, "resume_provenance", before + line);
    check(H5Fflush(m.file, H5F_SCOPE_GLOBAL), "H5Fflush", path);
  });
}

RunFile::~RunFile() = default;

void RunFile::append(const Record& record) {
  Impl& m = *impl_;
  h5::naming_file(m.path, [&] {
    if (record.trajectories.size() != m.series.size()) throw Error("RunFile::append: trajectory count mismatch");
    const hsize_t r = m.records;
    const long long step = record.step;
    // Every rank writes the small series' rows (the same values: reduced, or the same step): when group rank 0
    // wrote them alone, the ranks' HDF5 metadata caches drifted apart and a run of some thousand records
    // failed at its end (MPI_ERR_TRUNCATE in H5C_protect); θ stays one hyperslab per rank.
    m.step->append(r, &step, true, m.dxpl);
    m.time->append(r, &record.time, true, m.dxpl);
    for (std::size_t i = 0; i < m.series.size(); ++i) {
      const TrajectoryRecord& t = record.trajectories[i];
      TrajectorySeries& s = m.series[i];
      if (s.theta)
        s.theta->append(r, t.theta->data(), static_cast<hsize_t>(m.header.slice_size),
                        static_cast<hsize_t>(m.header.slice_begin), m.dxpl);
      const double* values = t.values.data();
      for (std::size_t k = 0; k < s.values.size(); ++k) {
        s.values[k]->append(r, values, true, m.dxpl);
        values += std::max<Index>(m.header.records[i].series[k].width, 1);
      }
    }
    ++m.records;
    check(H5Fflush(m.file, H5F_SCOPE_GLOBAL), "H5Fflush", m.path);
  });
}

void RunFile::finish(const RunOutcome& outcome, const std::string& finished) {
  Impl& m = *impl_;
  h5::naming_file(m.path, [&] {
    hid_t root = m.file;
    for (const TrajectorySummary& t : outcome.trajectories) write_statistics(root, t);
    h5::write_string_attribute(root, "status", to_string(outcome.status));
    h5::write_string_attribute(root, "finished", finished);
    if (outcome.peak_rank_memory_bytes > 0)
      h5::write_int_attribute(root, "peak_rank_memory_bytes", outcome.peak_rank_memory_bytes);
    if (m.header.observables.sharpness) {
      h5::write_double_attribute(root, "max_lr_sharpness", outcome.max_lr_sharpness);
      if (m.header.observables.preconditioned_sharpness)
        h5::write_double_attribute(root, "max_lr_preconditioned_sharpness", outcome.max_lr_preconditioned_sharpness);
      h5::write_string_attribute(root, "edge_of_stability", outcome.first_unstable_step < 0
                                                                ? "no"
                                                                : outcome.stability.crossing(outcome.first_unstable_step));
    }
    check(H5Fflush(m.file, H5F_SCOPE_GLOBAL), "H5Fflush", m.path);
    m.close();
  });
}

std::string reopen_problem(const std::string& path, const RunFileHeader& header, long records, long long last_step) {
  h5::silence_error_stack();
  if (records < 0) return "a checkpoint of " + std::to_string(records) + " records";
  try {
    Handle file = h5::open_file_readonly(path);
    std::unique_ptr<RecordSeries> step, time;
    std::vector<TrajectorySeries> series(header.records.size());
    for (const SeriesSpec& spec : series_specs(header, step, time, series)) {
      Handle ds = h5::open_dataset(file, spec.name, path);
      const auto dims = h5::dataset_shape(ds, path + ":" + spec.name);
      if (dims.empty() || dims.size() != (spec.width == 0 ? 1U : 2U) || (spec.width > 0 && dims[1] != spec.width))
        return "its " + spec.name + " is not a record series of this run";
      if (dims[0] < static_cast<hsize_t>(records))
        return "it holds " + std::to_string(dims[0]) + " records of " + spec.name + ", fewer than the checkpoint's " +
               std::to_string(records);
    }
    if (records == 0) return "";
    Handle ds = h5::open_dataset(file, "/step", path);
    const long long at = h5::read_element<long long>(ds, static_cast<hsize_t>(records - 1), H5T_NATIVE_LLONG, path);
    if (at != last_step)
      return "its record " + std::to_string(records - 1) + " is of step " + std::to_string(at) + ", the checkpoint's of step " +
             std::to_string(last_step);
  } catch (const Error& e) {
    return std::string("cannot read it (") + e.what() + ")";
  }
  return "";
}

}  // namespace eomlab::io
