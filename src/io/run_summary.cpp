#include "io/run_summary.hpp"

#include <limits>

#include "io/h5.hpp"

namespace eomlab::io {
namespace {

using h5::check;
using h5::Handle;

// Last element of a 1-D dataset (NaN or 0 when empty).
template <class T>
T read_last(hid_t file, const std::string& name, hid_t mem_type, const std::string& path, T empty) {
  Handle ds = h5::open_dataset(file, name, path);
  const auto dims = h5::dataset_shape(ds, path + ":" + name);
  if (dims.empty() || dims[0] == 0) return empty;
  return h5::read_element<T>(ds, dims[0] - 1, mem_type, path + ":" + name);
}

}  // namespace

RunResult read_run_result(const std::string& path, const std::vector<std::string>& trajectories) {
  h5::silence_error_stack();
  Handle file = h5::open_file_readonly(path);
  RunResult r;
  r.run_id = h5::read_string_attribute(file, "run_id", path);
  r.status = h5::read_string_attribute(file, "status", path);
  r.lr = h5::read_double_attribute(file, "lr", path);
  r.weight_decay = h5::read_double_attribute(file, "weight_decay", path);
  r.seed = h5::read_int_attribute(file, "seed", path);
  r.final_step = read_last<long long>(file, "/step", H5T_NATIVE_LLONG, path, -1);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const std::string& t : trajectories) {
    TrajectoryResult tr;
    tr.name = t;
    const std::string obs = "/observables/" + t;
    tr.final_loss = read_last<double>(file, obs + "/loss", H5T_NATIVE_DOUBLE, path, nan);
    // distance_to_<method>: older files of GD runs have it too.
    tr.final_distance = t == trajectories.front()
                            ? 0.0
                            : read_last<double>(file, obs + "/distance_to_" + trajectories.front(), H5T_NATIVE_DOUBLE, path, nan);
    Handle group(H5Gopen2(file, obs.c_str(), H5P_DEFAULT), H5Gclose, "H5Gopen", path + ":" + obs);
    if (H5Aexists(group, "evaluations") > 0)
      tr.evaluations = static_cast<long>(h5::read_int_attribute(group, "evaluations", path));
    r.trajectories.push_back(tr);
  }
  return r;
}

std::string read_run_string(const std::string& path, const std::string& attribute) {
  h5::silence_error_stack();
  Handle file = h5::open_file_readonly(path);
  return h5::read_string_attribute(file, attribute, path);
}

std::map<std::string, std::string> read_run_strings(const std::string& path, const std::vector<std::string>& attributes,
                                                    const std::string& group) {
  h5::silence_error_stack();
  Handle file = h5::open_file_readonly(path);
  std::map<std::string, std::string> found;
  if (!group.empty() && check(H5Lexists(file, group.c_str(), H5P_DEFAULT), "H5Lexists", path + ":" + group) <= 0) return found;
  Handle object = group.empty() ? std::move(file)
                                : Handle(H5Gopen2(file, group.c_str(), H5P_DEFAULT), H5Gclose, "H5Gopen", path + ":" + group);
  for (const std::string& name : attributes)
    if (check(H5Aexists(object, name.c_str()), "H5Aexists", path + ":" + name) > 0)
      found[name] = h5::read_string_attribute(object, name, path);
  return found;
}

}  // namespace eomlab::io
