// RAII handles and the single point where HDF5 return codes are checked. Internal to src/io
// (includes hdf5.h): other modules use io's own headers.
#pragma once
#include <hdf5.h>

#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "dist/comm.hpp"

namespace eomlab::io::h5 {

// Throws an Error naming the call, the object and HDF5's own reason (the innermost entry of its error
// stack, which is then cleared) for a failed call.
[[noreturn]] void fail(const char* call, const std::string& object);

// "; its file system is full" when the file system holding `path` has (almost) no space left and the
// message does not say so already (a failed write's errno is not always still the system's reason).
std::string full_file_system_note(const std::string& path, const std::string& message);

// Runs f; an Error from inside the file `path` (its objects are named by their path in it) is rethrown
// naming the file too. An InputError stays as it is.
template <class F>
void naming_file(const std::string& path, F&& f) {
  try {
    f();
  } catch (const InputError&) {
    throw;
  } catch (const Error& e) {
    if (std::string(e.what()).find(path) != std::string::npos) throw;
    throw Error("'" + path + "': " + e.what() + full_file_system_note(path, e.what()));
  }
}

// Returns rc, or fails as above when an HDF5 call returned a negative value.
template <class T>
T check(T rc, const char* call, const std::string& object) {
  if (rc < 0) fail(call, object);
  return rc;
}

// Owns one hid_t and closes it with the matching H5?close.
// A handle marked collective (a file opened with the MPI-IO driver) is not closed when it is destroyed
// while an exception unwinds the stack: that exception may have hit this rank alone, and a collective
// close would wait forever for the others. The job is then aborted by main().
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  struct Collective {};
  Handle() = default;
  Handle(hid_t id, Closer closer, const char* call, const std::string& object)
      : id_(check(id, call, object)), closer_(closer) {}
  Handle(hid_t id, Closer closer, const char* call, const std::string& object, Collective)
      : id_(check(id, call, object)), closer_(closer), collective_(true), exceptions_(std::uncaught_exceptions()) {}
  ~Handle() {
    if (collective_ && std::uncaught_exceptions() > exceptions_) return;
    reset();
  }
  Handle(Handle&& o) noexcept
      : id_(std::exchange(o.id_, H5I_INVALID_HID)), closer_(o.closer_), collective_(o.collective_), exceptions_(o.exceptions_) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      closer_ = o.closer_;
      collective_ = o.collective_;
      exceptions_ = o.exceptions_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }  // NOLINT: handles are passed straight to the C API
  void reset() {
    if (id_ >= 0 && closer_) closer_(id_);
    id_ = H5I_INVALID_HID;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
  bool collective_ = false;
  int exceptions_ = 0;
};

// Removes `path` (rank 0 of `group`) and waits for every rank, before the group creates it
// collectively: creating over a stale file (left by a killed job) races between ranks with MPI-IO.
void remove_before_create(const std::string& path, const dist::Comm& group);

// File access through the MPI-IO driver over `group`, and a collective transfer property list.
Handle collective_file_access(const dist::Comm& group, const std::string& path);
Handle collective_transfer(const std::string& path);

// For a collective write in which this rank contributes nothing: empties both selections.
void select_nothing_unless(bool contributes, hid_t file_space, hid_t mem_space, const std::string& object);

// Turns off HDF5's printing of its error stack; failures surface as Errors from check().
void silence_error_stack();

Handle open_file_readonly(const std::string& path);
Handle open_dataset(hid_t loc, const std::string& name, const std::string& file);
bool exists(hid_t loc, const std::string& name);
// The file an external link `name` points to, as stored in the link (HDF5 resolves a relative one against
// several folders), or nullopt when `name` is no external link; the link is not followed.
std::optional<std::string> external_link_file(hid_t loc, const std::string& name, const std::string& file);
// What an existing object `name` is; to_string names it for messages ("a dataset", "a group", ...).
enum class ObjectKind { dataset, group, named_datatype, other };
ObjectKind object_kind(hid_t loc, const std::string& name, const std::string& file);
std::string to_string(ObjectKind kind);
std::vector<hsize_t> dataset_shape(hid_t dataset, const std::string& object);
// Element `index` of a 1-D dataset, read as `mem_type`.
template <class T>
T read_element(hid_t dataset, hsize_t index, hid_t mem_type, const std::string& object) {
  Handle space(H5Dget_space(dataset), H5Sclose, "H5Dget_space", object);
  hsize_t count = 1;
  check(H5Sselect_hyperslab(space, H5S_SELECT_SET, &index, nullptr, &count, nullptr), "H5Sselect_hyperslab", object);
  Handle mem(H5Screate_simple(1, &count, nullptr), H5Sclose, "H5Screate_simple", object);
  T value{};
  check(H5Dread(dataset, mem_type, mem, space, H5P_DEFAULT, &value), "H5Dread", object);
  return value;
}
Handle scalar_string_type(std::size_t length);
// String attributes are variable-length UTF-8 (h5py reads them as str); reading accepts fixed-length too.
void write_string_attribute(hid_t obj, const std::string& name, const std::string& value);
std::string read_string_attribute(hid_t obj, const std::string& name, const std::string& object);
void write_double_attribute(hid_t obj, const std::string& name, double value);
void write_int_attribute(hid_t obj, const std::string& name, long long value);
double read_double_attribute(hid_t obj, const std::string& name, const std::string& object);
long long read_int_attribute(hid_t obj, const std::string& name, const std::string& object);

}  // namespace eomlab::io::h5
