#include "io/catalog.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "io/h5.hpp"
#include "io/run_summary.hpp"

namespace fs = std::filesystem;

namespace eomlab::io {
namespace {

using h5::check;
using h5::Handle;

// A row of /summary: these fields, then one double per trajectory (final_loss_gd, then final_distance_<flow>
// per flow), as many as the study has.
struct Row {
  char run_id[128];  // the longest run id (method, lr and weight decay in 17 digits, a 20-digit seed) has 87
  double lr;
  long long seed;
  double weight_decay;
  char status[16];
  long long final_step;
};
static_assert(sizeof(Row) % alignof(double) == 0, "a row's values follow its fields");

}  // namespace

CatalogCounts write_catalog(const std::string& output_dir, const std::string& study_name, const std::string& config_text,
                  const std::vector<RunSpec>& runs, const std::vector<std::string>& trajectories) {
  h5::silence_error_stack();
  const fs::path dir(output_dir);
  // A temporary name of this process's own: several array tasks may rebuild the catalog at once.
  const std::string final_path = (dir / "sweep.h5").string(),
                    temp_path = (dir / (".sweep.h5.tmp." + std::to_string(getpid()))).string();
  const std::size_t n_values = trajectories.size();  // gd's loss + one distance per flow
  const std::size_t row_size = sizeof(Row) + n_values * sizeof(double);
  const double nan = std::numeric_limits<double>::quiet_NaN();

  std::vector<unsigned char> table(runs.size() * row_size);
  CatalogCounts counts;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const RunSpec& run = runs[i];
    Row row{};
    std::vector<double> values(n_values, nan);
    if (run.run_id.size() >= sizeof row.run_id) throw Error("write_catalog: run id longer than its column: " + run.run_id);
    std::strncpy(row.run_id, run.run_id.c_str(), sizeof row.run_id - 1);
    row.lr = run.lr;
    row.seed = static_cast<long long>(run.seed);
    row.weight_decay = run.weight_decay;
    row.final_step = -1;
    const std::string path = (dir / "runs" / (run.run_id + ".h5")).string();
    std::string status = "missing";
    if (fs::exists(path)) {
      try {
        const RunResult r = read_run_result(path, trajectories);
        status = r.status;
        row.final_step = r.final_step;
        values[0] = r.trajectories[0].final_loss;
        for (std::size_t t = 1; t < r.trajectories.size(); ++t) values[t] = r.trajectories[t].final_distance;
        ++counts.found;
        counts.running += status == "running";
      } catch (const Error&) {
        status = "unreadable";
      }
    }
    std::strncpy(row.status, status.c_str(), sizeof row.status - 1);
    std::memcpy(table.data() + i * row_size, &row, sizeof row);
    std::memcpy(table.data() + i * row_size + sizeof row, values.data(), n_values * sizeof(double));
  }

  {
    Handle file(H5Fcreate(temp_path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose, "H5Fcreate", temp_path);
    h5::write_string_attribute(file, "study", study_name);
    h5::write_string_attribute(file, "config", config_text);
    Handle group(H5Gcreate2(file, "runs", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, "H5Gcreate", "/runs");
    for (const RunSpec& run : runs) {
      const std::string target = "runs/" + run.run_id + ".h5";  // relative to the catalog's directory
      check(H5Lcreate_external(target.c_str(), "/", group, run.run_id.c_str(), H5P_DEFAULT, H5P_DEFAULT),
            "H5Lcreate_external", "/runs/" + run.run_id);
    }
    Handle id_type = h5::scalar_string_type(sizeof(Row::run_id));
    Handle status_type = h5::scalar_string_type(sizeof(Row::status));
    Handle row_type(H5Tcreate(H5T_COMPOUND, row_size), H5Tclose, "H5Tcreate", "/summary");
    check(H5Tinsert(row_type, "run_id", HOFFSET(Row, run_id), id_type), "H5Tinsert", "/summary");
    check(H5Tinsert(row_type, "lr", HOFFSET(Row, lr), H5T_NATIVE_DOUBLE), "H5Tinsert", "/summary");
    check(H5Tinsert(row_type, "seed", HOFFSET(Row, seed), H5T_NATIVE_LLONG), "H5Tinsert", "/summary");
    check(H5Tinsert(row_type, "weight_decay", HOFFSET(Row, weight_decay), H5T_NATIVE_DOUBLE), "H5Tinsert", "/summary");
    check(H5Tinsert(row_type, "status", HOFFSET(Row, status), status_type), "H5Tinsert", "/summary");
    check(H5Tinsert(row_type, "final_step", HOFFSET(Row, final_step), H5T_NATIVE_LLONG), "H5Tinsert", "/summary");
    for (std::size_t t = 0; t < n_values; ++t) {
      const std::string name = t == 0 ? "final_loss_gd" : "final_distance_" + trajectories[t];
      check(H5Tinsert(row_type, name.c_str(), sizeof(Row) + t * sizeof(double), H5T_NATIVE_DOUBLE), "H5Tinsert", "/summary");
    }
    hsize_t n = runs.size();
    Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose, "H5Screate_simple", "/summary");
    Handle ds(H5Dcreate2(file, "summary", row_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose, "H5Dcreate",
              "/summary");
    check(H5Dwrite(ds, row_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, table.data()), "H5Dwrite", "/summary");
  }
  std::error_code ec;
  fs::rename(temp_path, final_path, ec);
  if (ec) throw Error("cannot move the catalog into place at '" + final_path + "': " + ec.message());
  return counts;
}

}  // namespace eomlab::io
