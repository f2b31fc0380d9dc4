#include "io/h5.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <sys/statvfs.h>

#include "dist/native.hpp"

namespace eomlab::io::h5 {

void remove_before_create(const std::string& path, const dist::Comm& group) {
  if (group.rank() == 0) std::remove(path.c_str());
  group.barrier();
}

Handle collective_file_access(const dist::Comm& group, const std::string& path) {
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5Pcreate", path);
  check(H5Pset_fapl_mpio(fapl, dist::native_handle(group), MPI_INFO_NULL), "H5Pset_fapl_mpio", path);
  return fapl;
}

Handle collective_transfer(const std::string& path) {
  Handle dxpl(H5Pcreate(H5P_DATASET_XFER), H5Pclose, "H5Pcreate", path);
  check(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE), "H5Pset_dxpl_mpio", path);
  return dxpl;
}

void select_nothing_unless(bool contributes, hid_t file_space, hid_t mem_space, const std::string& object) {
  if (contributes) return;
  check(H5Sselect_none(file_space), "H5Sselect_none", object);
  check(H5Sselect_none(mem_space), "H5Sselect_none", object);
}

void silence_error_stack() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

namespace {

// Walked from the API call down: the last entry is the innermost, most specific one.
extern "C" herr_t keep_innermost(unsigned, const H5E_error2_t* entry, void* reason) {
  if (entry->desc && *entry->desc)
    *static_cast<std::string*>(reason) = std::string(entry->desc) + " (" + entry->func_name + ")";
  return 0;
}

}  // namespace

// HDF5's reason for a failed write does not say why the file system refused it; the system's does, for
// the errors a write meets on a cluster (a stale errno of another kind is not taken for it).
std::string system_reason() {
  const int e = errno;
  return e == ENOSPC || e == EDQUOT || e == EIO || e == EROFS || e == EFBIG ? std::string("; the system says: ") + std::strerror(e)
                                                                           : std::string();
}

std::string full_file_system_note(const std::string& path, const std::string& message) {
  struct statvfs fs {};
  const std::string dir = std::filesystem::path(path).parent_path().string();
  if (message.find(std::strerror(ENOSPC)) != std::string::npos || statvfs(dir.empty() ? "." : dir.c_str(), &fs) != 0)
    return "";
  const double free_bytes = static_cast<double>(fs.f_bavail) * static_cast<double>(fs.f_frsize);
  return free_bytes < 1024.0 * 1024.0 ? "; its file system is full (" + std::to_string(static_cast<long long>(free_bytes / 1024)) + " KiB free)"
                                      : "";
}

void fail(const char* call, const std::string& object) {
  const std::string system = system_reason();
  std::string reason;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, keep_innermost, &reason);
  H5Eclear2(H5E_DEFAULT);
  throw Error(std::string(call) + " failed on '" + object + "': " +
              (reason.empty() ? std::string("HDF5 gave no reason") : "HDF5 says: " + reason) + system);
}

Handle open_file_readonly(const std::string& path) {
  return Handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, "H5Fopen", path);
}

Handle open_dataset(hid_t loc, const std::string& name, const std::string& file) {
  return Handle(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), H5Dclose, "H5Dopen", file + ":" + name);
}

bool exists(hid_t loc, const std::string& name) {
  return H5Lexists(loc, name.c_str(), H5P_DEFAULT) > 0 && H5Oexists_by_name(loc, name.c_str(), H5P_DEFAULT) > 0;
}

std::optional<std::string> external_link_file(hid_t loc, const std::string& name, const std::string& file) {
  H5L_info_t info{};
  if (H5Lexists(loc, name.c_str(), H5P_DEFAULT) <= 0 || H5Lget_info(loc, name.c_str(), &info, H5P_DEFAULT) < 0 ||
      info.type != H5L_TYPE_EXTERNAL)
    return std::nullopt;
  std::vector<char> value(info.u.val_size);
  check(H5Lget_val(loc, name.c_str(), value.data(), value.size(), H5P_DEFAULT), "H5Lget_val", file + ":" + name);
  unsigned flags = 0;
  const char* target_file = nullptr;
  const char* target_object = nullptr;
  check(H5Lunpack_elink_val(value.data(), value.size(), &flags, &target_file, &target_object), "H5Lunpack_elink_val",
        file + ":" + name);
  return std::string(target_file);
}

ObjectKind object_kind(hid_t loc, const std::string& name, const std::string& file) {
  const Handle object(H5Oopen(loc, name.c_str(), H5P_DEFAULT), H5Oclose, "H5Oopen", file + ":" + name);
  switch (H5Iget_type(object)) {
    case H5I_DATASET: return ObjectKind::dataset;
    case H5I_GROUP: return ObjectKind::group;
    case H5I_DATATYPE: return ObjectKind::named_datatype;
    default: return ObjectKind::other;
  }
}

std::string to_string(ObjectKind kind) {
  switch (kind) {
    case ObjectKind::dataset: return "a dataset";
    case ObjectKind::group: return "a group";
    case ObjectKind::named_datatype: return "a named datatype";
    case ObjectKind::other: break;
  }
  return "an object of another kind";
}

std::vector<hsize_t> dataset_shape(hid_t dataset, const std::string& object) {
  Handle space(H5Dget_space(dataset), H5Sclose, "H5Dget_space", object);
  const int rank = check(H5Sget_simple_extent_ndims(space), "H5Sget_simple_extent_ndims", object);
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  if (rank > 0) check(H5Sget_simple_extent_dims(space, dims.data(), nullptr), "H5Sget_simple_extent_dims", object);
  return dims;
}

Handle scalar_string_type(std::size_t length) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy", "string type");
  check(H5Tset_size(type, length == 0 ? 1 : length), "H5Tset_size", "string type");
  check(H5Tset_strpad(type, H5T_STR_NULLPAD), "H5Tset_strpad", "string type");
  return type;
}

namespace {

// Attributes are read as one value into one variable: one holding more (a damaged or edited file)
// would overrun it.
void require_one_value(hid_t attr, const std::string& where) {
  Handle space(H5Aget_space(attr), H5Sclose, "H5Aget_space", where);
  const hssize_t points = H5Sget_simple_extent_npoints(space);
  if (points != 1) throw Error(where + ": expected one value, got " + std::to_string(static_cast<long long>(points)));
}

void write_attribute(hid_t obj, const std::string& name, hid_t type, const void* data) {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate", name);
  if (H5Aexists(obj, name.c_str()) > 0) check(H5Adelete(obj, name.c_str()), "H5Adelete", name);
  Handle attr(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose, "H5Acreate", name);
  check(H5Awrite(attr, type, data), "H5Awrite", name);
}

}  // namespace

Handle utf8_string_type() {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy", "string type");
  check(H5Tset_size(type, H5T_VARIABLE), "H5Tset_size", "string type");
  check(H5Tset_cset(type, H5T_CSET_UTF8), "H5Tset_cset", "string type");
  return type;
}

void write_string_attribute(hid_t obj, const std::string& name, const std::string& value) {
  Handle type = utf8_string_type();
  const char* data = value.c_str();
  write_attribute(obj, name, type, &data);
}

std::string read_string_attribute(hid_t obj, const std::string& name, const std::string& object) {
  const std::string where = object + "@" + name;
  Handle attr(H5Aopen(obj, name.c_str(), H5P_DEFAULT), H5Aclose, "H5Aopen", where);
  Handle type(H5Aget_type(attr), H5Tclose, "H5Aget_type", where);
  if (H5Tget_class(type) != H5T_STRING) throw Error("attribute '" + where + "' is not a string");
  require_one_value(attr, where);
  if (check(H5Tis_variable_str(type), "H5Tis_variable_str", where) > 0) {
    Handle mem = utf8_string_type();
    char* data = nullptr;
    check(H5Aread(attr, mem, &data), "H5Aread", where);
    std::string value = data ? data : "";
    H5free_memory(data);
    return value;
  }
  const std::size_t size = H5Tget_size(type);
  std::string value(size, '\0');
  Handle mem = scalar_string_type(size);
  check(H5Aread(attr, mem, value.data()), "H5Aread", where);
  return value.substr(0, value.find('\0'));
}

void write_double_attribute(hid_t obj, const std::string& name, double value) {
  write_attribute(obj, name, H5T_NATIVE_DOUBLE, &value);
}

void write_int_attribute(hid_t obj, const std::string& name, long long value) {
  write_attribute(obj, name, H5T_NATIVE_LLONG, &value);
}

namespace {

template <class T>
T read_attribute(hid_t obj, const std::string& name, hid_t mem_type, const std::string& object) {
  const std::string where = object + "@" + name;
  Handle attr(H5Aopen(obj, name.c_str(), H5P_DEFAULT), H5Aclose, "H5Aopen", where);
  require_one_value(attr, where);
  T value{};
  check(H5Aread(attr, mem_type, &value), "H5Aread", where);
  return value;
}

}  // namespace

double read_double_attribute(hid_t obj, const std::string& name, const std::string& object) {
  return read_attribute<double>(obj, name, H5T_NATIVE_DOUBLE, object);
}

long long read_int_attribute(hid_t obj, const std::string& name, const std::string& object) {
  return read_attribute<long long>(obj, name, H5T_NATIVE_LLONG, object);
}

}  // namespace eomlab::io::h5
