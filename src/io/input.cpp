#include "io/input.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/files.hpp"
#include "core/memory.hpp"
#include "data/synthetic.hpp"
#include "io/h5.hpp"

namespace eomlab::io {
namespace {

h5::Handle open_input(const std::string& path, const std::string& key) {
  h5::silence_error_stack();
  require_regular_file(key, path);
  if (!std::ifstream(path).good()) throw InputError(key + ": cannot open file '" + path + "'");
  if (H5Fis_hdf5(path.c_str()) <= 0) throw InputError(key + ": '" + path + "' is not an HDF5 file");
  try {
    return h5::open_file_readonly(path);
  } catch (const Error&) {
    throw InputError(key + ": cannot open HDF5 file '" + path + "'");
  }
}

// The files HDF5 may open for an external link to `target` from the file `path`: as given, beside `path`,
// their names alone there and here, and under each folder of HDF5_EXT_PREFIX.
std::vector<std::filesystem::path> link_candidates(const std::string& target, const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path given(target), folder = fs::path(path).parent_path();
  std::vector<fs::path> out{given, folder / given, folder / given.filename(), given.filename()};
  if (const char* prefixes = std::getenv("HDF5_EXT_PREFIX")) {
    std::stringstream list(prefixes);
    for (std::string prefix; std::getline(list, prefix, ':');) out.push_back(fs::path(prefix) / given);
  }
  return out;
}

h5::Handle require_dataset(hid_t file, const std::string& name, const std::string& path, const std::string& key) {
  // An external link is followed only to regular files, as the input itself (HDF5 opening a FIFO waits
  // forever, deaf to the stop signals).
  if (const auto target = h5::external_link_file(file, name, path))
    for (const auto& candidate : link_candidates(*target, path)) {
      std::error_code ec;
      if (std::filesystem::exists(candidate, ec)) require_regular_file(key, candidate.string());
    }
  if (!h5::exists(file, name)) throw InputError(key + ": '" + path + "' has no dataset " + name);
  if (const h5::ObjectKind kind = h5::object_kind(file, name, path); kind != h5::ObjectKind::dataset)
    throw InputError(key + ": '" + path + "': expected a dataset " + name + ", got " + to_string(kind));
  return h5::open_dataset(file, name, path);
}

H5T_class_t type_class(hid_t dataset, const std::string& object) {
  h5::Handle type(H5Dget_type(dataset), H5Tclose, "H5Dget_type", object);
  return H5Tget_class(type);
}

// The element type as numpy names it ("float64", "int32", "uint8"), or its HDF5 class.
std::string dtype_text(hid_t dataset, const std::string& object) {
  h5::Handle type(H5Dget_type(dataset), H5Tclose, "H5Dget_type", object);
  const std::string bits = std::to_string(8 * H5Tget_size(type));
  switch (H5Tget_class(type)) {
    case H5T_FLOAT: return "float" + bits;
    case H5T_INTEGER: return (H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int") + bits;
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_ARRAY: return "array";
    case H5T_VLEN: return "vlen";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_REFERENCE: return "reference";
    default: return "unknown type";
  }
}

// "int32 [32, 4]": what a dataset holds, for a message saying what was expected instead.
std::string contents_text(hid_t dataset, const std::vector<hsize_t>& dims, const std::string& object) {
  std::string s = dtype_text(dataset, object) + " [";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// The first filter of the dataset's pipeline that this HDF5 library cannot apply ("filter 32000 'lzf'",
// h5py's own), or "" when it has them all.
std::string unavailable_filter(hid_t dataset, const std::string& where) {
  h5::Handle dcpl(H5Dget_create_plist(dataset), H5Pclose, "H5Dget_create_plist", where);
  const int filters = H5Pget_nfilters(dcpl);
  for (int i = 0; i < filters; ++i) {
    unsigned flags = 0, config = 0;
    std::size_t values = 0;
    char name[128] = {};
    const H5Z_filter_t id = H5Pget_filter2(dcpl, static_cast<unsigned>(i), &flags, &values, nullptr, sizeof name, name, &config);
    if (id >= 0 && H5Zfilter_avail(id) <= 0)
      return "filter " + std::to_string(id) + (name[0] ? " '" + std::string(name) + "'" : std::string());
  }
  return "";
}

void read_all(hid_t dataset, hid_t mem_type, void* out, const std::string& where) {
  if (H5Dread(dataset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0) return;
  if (const std::string filter = unavailable_filter(dataset, where); !filter.empty())
    throw InputError(where + ": expected data this HDF5 library can decompress, got data stored with " + filter +
                     ", which it does not have (store it uncompressed or with gzip)");
  throw InputError(where + ": cannot read the data (corrupt or truncated file?)");
}

// n integer labels of `y` as int64; uint64 labels beyond int64 are refused by their value (HDF5 would
// clip them to 2^63 - 1).
void read_labels(hid_t y, std::vector<std::int64_t>& labels, Index n, const std::string& where, const std::string& path) {
  labels.resize(static_cast<std::size_t>(n));
  if (dtype_text(y, path) != "uint64") return read_all(y, H5T_NATIVE_INT64, labels.data(), where);
  std::vector<std::uint64_t> raw(labels.size());
  read_all(y, H5T_NATIVE_UINT64, raw.data(), where);
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      throw InputError(where + ": expected labels below 2^63, got " + std::to_string(raw[i]));
    labels[i] = static_cast<std::int64_t>(raw[i]);
  }
}

// Chunks of a chunked dataset that were never written (they would read as fill values): "" when every chunk
// of its grid is stored.
std::string unwritten_chunks(hid_t dataset, hid_t dcpl, const std::vector<hsize_t>& dims, const std::string& where) {
  if (H5Pget_layout(dcpl) != H5D_CHUNKED || dims.empty()) return "";
  std::vector<hsize_t> chunk(dims.size());
  h5::check(H5Pget_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data()), "H5Pget_chunk", where);
  double grid = 1;
  for (std::size_t i = 0; i < dims.size(); ++i) grid *= std::ceil(static_cast<double>(dims[i]) / static_cast<double>(chunk[i]));
  h5::Handle space(H5Dget_space(dataset), H5Sclose, "H5Dget_space", where);
  hsize_t stored = 0;
  h5::check(H5Dget_num_chunks(dataset, space, &stored), "H5Dget_num_chunks", where);
  if (static_cast<double>(stored) >= grid) return "";
  return std::to_string(static_cast<long long>(grid - static_cast<double>(stored))) + " of its " +
         std::to_string(static_cast<long long>(grid)) + " chunks never written";
}

// A dataset must store every element: one declaring more than the file holds is refused before anything is
// allocated (the missing part would read as fill values). Without filters its storage size shows it, with
// filters (compressed) its chunks written.
void require_stored(hid_t dataset, const std::vector<hsize_t>& dims, const std::string& where) {
  h5::Handle dcpl(H5Dget_create_plist(dataset), H5Pclose, "H5Dget_create_plist", where);
  h5::Handle type(H5Dget_type(dataset), H5Tclose, "H5Dget_type", where);
  double declared = static_cast<double>(H5Tget_size(type));
  for (hsize_t d : dims) declared *= static_cast<double>(d);
  const double stored = static_cast<double>(H5Dget_storage_size(dataset));
  const std::string expected = where + ": expected the " + std::to_string(static_cast<long long>(declared)) +
                               " bytes its shape declares (" + contents_text(dataset, dims, where) + "), got ";
  if (H5Pget_layout(dcpl) == H5D_VIRTUAL)  // its size says nothing, and parts no source maps read as fill values
    throw InputError(expected + "a virtual dataset (mapped from others, which are not checked): copy its values into the file");
  if (const int external = H5Pget_external_count(dcpl); external > 0)  // a short one reads as zeros, a FIFO blocks
    throw InputError(expected + "data stored in " + std::to_string(external) +
                     " external file(s), which are not checked: copy its values into the file");
  if (H5Pget_nfilters(dcpl) == 0 && stored < declared)
    throw InputError(expected + std::to_string(static_cast<long long>(stored)) + " stored in the file");
  const std::string unwritten = unwritten_chunks(dataset, dcpl, dims, where);
  if (!unwritten.empty()) throw InputError(expected + unwritten + " (they would read as fill values)");
}

// Refused before its float64 copy is allocated: a compressed dataset may declare far more than its file
// holds, and the study's memory check comes after the data (std::bad_alloc, or the OOM killer, before it).
void require_fits_in_memory(hid_t dataset, const std::vector<hsize_t>& dims, const std::string& where) {
  double bytes = 8;
  for (hsize_t d : dims) bytes *= static_cast<double>(d);
  const double left = static_cast<double>(memory_left_bytes());
  if (left > 0 && bytes > left)
    throw InputError(where + ": expected data that fits in memory (" + std::to_string(static_cast<long long>(left)) +
                     " bytes left to this process), got " + contents_text(dataset, dims, where) + ", " +
                     std::to_string(static_cast<long long>(bytes)) + " bytes as float64");
}

void require_usable(const Eigen::Ref<const Matrix>& m, const std::string& where) {
  if (const std::string found = unusable_values(m); !found.empty())
    throw InputError(where + ": expected " + usable_values_text + ", got " + found);
}

}  // namespace

Dataset read_data_file(const std::string& path, LossKind loss, Index n_classes, const std::string& key) {
  h5::Handle file = open_input(path, key);
  const std::string where = key + ": " + path;
  h5::Handle x = require_dataset(file, "/X", path, key);
  const auto xdims = h5::dataset_shape(x, path + ":/X");
  const bool image = xdims.size() == 4;
  if ((xdims.size() != 2 && !image) || std::count(xdims.begin(), xdims.end(), hsize_t{0}) > 0 ||
      type_class(x, path) != H5T_FLOAT)
    throw InputError(where + ":/X: expected float64 [N, d] or [N, C, H, W], got " + contents_text(x, xdims, path));
  constexpr double max_extent = std::numeric_limits<int>::max();  // BLAS and MPI count in int
  const double features = image ? double(xdims[1]) * double(xdims[2]) * double(xdims[3]) : double(xdims[1]);
  if (static_cast<double>(xdims[0]) > max_extent || features > max_extent)
    throw InputError(where + ":/X: expected at most " + std::to_string(static_cast<long long>(max_extent)) +
                     " samples and features, got " + contents_text(x, xdims, path));
  require_stored(x, xdims, where + ":/X");
  require_fits_in_memory(x, xdims, where + ":/X");
  const Index n = static_cast<Index>(xdims[0]), d = static_cast<Index>(features);
  Dataset out;
  if (image) out.sample_shape = Shape(static_cast<Index>(xdims[1]), static_cast<Index>(xdims[2]), static_cast<Index>(xdims[3]));
  out.x.resize(d, n);  // row-major [N, d] or [N, C, H, W] is column-major d x N, d = C·H·W
  read_all(x, H5T_NATIVE_DOUBLE, out.x.data(), where + ":/X");
  require_usable(out.x, where + ":/X");

  h5::Handle y = require_dataset(file, "/y", path, key);
  const auto ydims = h5::dataset_shape(y, path + ":/y");
  const H5T_class_t yclass = type_class(y, path);
  if (ydims.empty() || ydims[0] != xdims[0])
    throw InputError(where + ":/y: expected " + std::to_string(n) + " rows like /X, got " + contents_text(y, ydims, path));
  require_stored(y, ydims, where + ":/y");
  if (yclass == H5T_INTEGER && ydims.size() == 1) {
    read_labels(y, out.labels, n, where + ":/y", path);
    for (std::int64_t label : out.labels)
      if (label < 0) throw InputError(where + ":/y: expected labels >= 0, got " + std::to_string(label));
    if (loss == LossKind::mse && n_classes >= 0) {
      Index k = n_classes;
      if (k == 0)
        for (std::int64_t label : out.labels) k = std::max<Index>(k, static_cast<Index>(label) + 1);
      for (std::int64_t label : out.labels)
        if (label >= k)
          throw InputError(where + ":/y: expected labels below " + std::to_string(k) + ", got " + std::to_string(label));
      given_labels_to_targets(out, k, where + ":/y");
    }
  } else if (yclass == H5T_FLOAT && ydims.size() == 2) {
    if (loss == LossKind::cross_entropy)
      throw InputError(where + ":/y: expected integer class labels [N] for cross_entropy, got targets " +
                       contents_text(y, ydims, path));
    require_fits_in_memory(y, ydims, where + ":/y");
    out.targets.resize(static_cast<Index>(ydims[1]), n);
    read_all(y, H5T_NATIVE_DOUBLE, out.targets.data(), where + ":/y");
    require_usable(out.targets, where + ":/y");
  } else {
    throw InputError(where + ":/y: expected int64 [N] labels or float64 [N, k] targets, got " +
                     contents_text(y, ydims, path));
  }
  return out;
}

Index declared_samples(const std::string& path, const std::string& key) {
  h5::Handle file = open_input(path, key);
  h5::Handle x = require_dataset(file, "/X", path, key);
  const auto dims = h5::dataset_shape(x, path + ":/X");
  return dims.empty() ? 0 : static_cast<Index>(dims[0]);
}

Vector read_parameters_file(const std::string& path, Index n_params, const std::string& key) {
  h5::Handle file = open_input(path, key);
  const std::string where = key + ": " + path + ":/theta";
  h5::Handle theta = require_dataset(file, "/theta", path, key);
  const auto dims = h5::dataset_shape(theta, path + ":/theta");
  if (dims.size() != 1 || static_cast<Index>(dims[0]) != n_params || type_class(theta, path) != H5T_FLOAT)
    throw InputError(where + ": expected float64 [" + std::to_string(n_params) + "] (the model's parameter count), got " +
                     contents_text(theta, dims, path));
  require_stored(theta, dims, where);
  Vector out(n_params);
  read_all(theta, H5T_NATIVE_DOUBLE, out.data(), where);
  require_usable(out, where);
  return out;
}

}  // namespace eomlab::io
