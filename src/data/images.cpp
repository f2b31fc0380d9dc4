#include "data/images.hpp"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <utility>

#include "core/error.hpp"
#include "core/files.hpp"
#include "core/fingerprint.hpp"
#include "core/memory.hpp"

namespace fs = std::filesystem;

namespace eomlab {
namespace {

using Bytes = std::vector<std::uint8_t>;

constexpr Index cifar_side = 32, cifar_channels = 3, cifar_classes = 10;
constexpr Index cifar_record = 1 + cifar_channels * cifar_side * cifar_side;

std::string quoted(const std::string& s) { return "'" + s + "'"; }

std::string hex(std::uint32_t x) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", x);
  return buf;
}

// The bytes of `path`, gunzipped if it is gzip (zlib reads any other file as it is), the first `limit` of them,
// handed in order to take(at, piece, n) in pieces of at most 1 MiB (`at`: the offset of the piece's first
// byte); returns how many were read. Only a piece is held at a time.
template <class Take>
std::size_t stream_file_bytes(const std::string& path, const std::string& key, std::size_t limit, Take&& take) {
  require_regular_file(key, path);
  const std::unique_ptr<gzFile_s, int (*)(gzFile)> file(gzopen(path.c_str(), "rb"), gzclose);
  if (!file) throw InputError(key + ": cannot open file " + quoted(path));
  constexpr unsigned chunk = 1u << 20;
  Bytes piece(std::min<std::size_t>(chunk, limit));
  for (std::size_t at = 0;;) {
    const std::size_t want = std::min<std::size_t>(chunk, limit - at);
    if (want == 0) return at;
    const int got = gzread(file.get(), piece.data(), static_cast<unsigned>(want));
    if (got < 0) throw InputError(key + ": " + quoted(path) + ": cannot read it (corrupt or truncated gzip?)");
    if (got == 0) return at;
    take(at, piece.data(), static_cast<std::size_t>(got));
    at += static_cast<std::size_t>(got);
  }
}

Bytes read_file_bytes(const std::string& path, const std::string& key,
                      std::size_t limit = std::numeric_limits<std::size_t>::max()) {
  Bytes bytes;
  if (limit < (std::size_t{1} << 30)) bytes.reserve(limit);  // a known size (a CIFAR-10 batch, a header): no regrowth
  stream_file_bytes(path, key, limit,
                    [&](std::size_t, const std::uint8_t* piece, std::size_t n) { bytes.insert(bytes.end(), piece, piece + n); });
  return bytes;
}

// Copies into `to` the records of `record` bytes, numbered from 0 at byte `first`, that `only` names (in
// increasing order; every one if null), from the pieces stream_file_bytes hands over.
class RecordPicker {
 public:
  RecordPicker(std::size_t first, std::size_t record, const std::vector<Index>* only, Bytes& to)
      : first_(first), record_(record), only_(only), to_(to) {}
  void operator()(std::size_t at, const std::uint8_t* piece, std::size_t n) {
    for (std::size_t i = at < first_ ? std::min(n, first_ - at) : 0; i < n;) {
      const std::size_t offset = at + i - first_, end = std::min(n, i + record_ - offset % record_);
      if (wanted(offset / record_)) to_.insert(to_.end(), piece + i, piece + end);
      i = end;
    }
  }

 private:
  bool wanted(std::size_t r) {
    if (!only_) return true;
    while (next_ < only_->size() && static_cast<std::size_t>((*only_)[next_]) < r) ++next_;
    return next_ < only_->size() && static_cast<std::size_t>((*only_)[next_]) == r;
  }

  std::size_t first_, record_;
  const std::vector<Index>* only_;
  std::size_t next_ = 0;
  Bytes& to_;
};

std::uint32_t big_endian(const Bytes& b, std::size_t at) {
  return std::uint32_t{b[at]} << 24 | std::uint32_t{b[at + 1]} << 16 | std::uint32_t{b[at + 2]} << 8 | b[at + 3];
}

std::string dims_text(const std::vector<Index>& dims) {
  std::string s;
  for (Index d : dims) s += (s.empty() ? "" : " x ") + std::to_string(d);
  return s;
}

std::size_t idx_header(std::size_t rank) { return 4 + 4 * rank; }

// The dimensions an IDX file of unsigned bytes with `rank` dimensions declares in its header, read from its
// first bytes (the data starts after idx_header(rank) of them).
std::vector<Index> idx_dims(const Bytes& bytes, int rank, const std::string& where) {
  const std::size_t header = idx_header(static_cast<std::size_t>(rank));
  if (bytes.size() < 4) throw_input_error(where, "an IDX file", std::to_string(bytes.size()) + " bytes");
  const std::uint32_t magic = big_endian(bytes, 0), expected = 0x0800u + static_cast<std::uint32_t>(rank);
  if (magic != expected)
    throw_input_error(where, "the IDX magic number " + hex(expected) + " (unsigned bytes, " + std::to_string(rank) +
                                 " dimension" + (rank > 1 ? "s" : "") + ")",
                      hex(magic));
  if (bytes.size() < header)
    throw_input_error(where, "an IDX header of " + std::to_string(header) + " bytes", std::to_string(bytes.size()) + " bytes");
  std::vector<Index> dims;
  for (int i = 0; i < rank; ++i) dims.push_back(static_cast<Index>(big_endian(bytes, 4 + 4 * static_cast<std::size_t>(i))));
  if (std::count(dims.begin(), dims.end(), Index{0}) > 0) throw_input_error(where, "non-empty dimensions", dims_text(dims));
  return dims;
}

// The size of an IDX file of `dims`, header and data, in double (beyond 2^63 no integer type holds it), and as text.
double idx_declared_bytes(const std::vector<Index>& dims) {
  double declared = 1;
  for (Index d : dims) declared *= static_cast<double>(d);
  return declared + static_cast<double>(idx_header(dims.size()));
}
std::string idx_declared_text(const std::vector<Index>& dims) {
  const double declared = idx_declared_bytes(dims);
  char text[32];
  std::snprintf(text, sizeof text, declared < 9e18 ? "%.0f" : "%.3e", declared);
  return std::string(text) + " bytes (its dimensions " + dims_text(dims) + ")";
}

// The data of an IDX file of `rank` dimensions (its items: the entries of dims[1..], e.g. one image), those
// that `only` names (all if null) in order, and its dimensions. The file is read through, no further than
// its header declares: a larger file, or a gzip expanding beyond it, is refused, and so is a shorter one; a
// file declaring more than this node has memory is refused before its data is read. Only the items kept
// are held. `check` sees the dimensions before the data is read.
template <class Check>
std::pair<Bytes, std::vector<Index>> read_idx_file(const std::string& path, int rank, const std::string& key, Check&& check,
                                                   const std::vector<Index>* only = nullptr) {
  const std::string where = key + ": " + path;
  std::vector<Index> dims = idx_dims(read_file_bytes(path, key, idx_header(static_cast<std::size_t>(rank))), rank, where);
  check(dims);
  const double declared = idx_declared_bytes(dims), available = static_cast<double>(memory_left_bytes());
  if ((available > 0 && declared > available) || declared > 9e18)  // 9e18: no memory holds it, known or not
    throw_input_error(where, "an IDX file that fits in memory" + (available > 0 ? " (" + std::to_string(static_cast<long long>(available)) +
                                 " bytes available)" : std::string()), idx_declared_text(dims));
  std::size_t item = 1;
  for (std::size_t i = 1; i < dims.size(); ++i) item *= static_cast<std::size_t>(dims[i]);
  Bytes data;
  const std::size_t read = stream_file_bytes(path, key, static_cast<std::size_t>(declared) + 1,
                                             RecordPicker(idx_header(dims.size()), item, only, data));
  const double size = static_cast<double>(read);
  if (size != declared)
    throw_input_error(where, idx_declared_text(dims), size < declared ? std::to_string(read) + " bytes (truncated)" : "more");
  return {std::move(data), std::move(dims)};
}

// PREFIX + NAME, or with ".gz" if only that exists.
std::string idx_file(const std::string& prefix, bool test, const std::string& name, const std::string& key) {
  const std::string plain = (fs::is_directory(prefix) ? (fs::path(prefix) / "").string() : prefix) +
                            (test ? "t10k-" : "train-") + name;
  if (fs::exists(plain)) return plain;
  if (fs::exists(plain + ".gz")) return plain + ".gz";
  throw_input_error(key, "the IDX file " + quoted(plain) + " or " + quoted(plain + ".gz"), "neither");
}

std::vector<std::int64_t> labels_of(const Bytes& bytes, std::size_t begin, std::size_t stride, std::size_t count) {
  std::vector<std::int64_t> labels(count);
  for (std::size_t i = 0; i < count; ++i) labels[i] = bytes[begin + i * stride];
  return labels;
}

std::vector<std::int64_t> idx_labels(const std::string& path, const std::string& key) {
  const auto [bytes, dims] = read_idx_file(path, 1, key, [](const std::vector<Index>&) {});
  return labels_of(bytes, 0, 1, static_cast<std::size_t>(dims[0]));
}

std::vector<std::string> cifar10_files(const std::string& folder, bool test) {
  if (test) return {(fs::path(folder) / "test_batch.bin").string()};
  std::vector<std::string> files;
  for (int i = 1; i <= 5; ++i) files.push_back((fs::path(folder) / ("data_batch_" + std::to_string(i) + ".bin")).string());
  return files;
}

void require_cifar10_size(std::uintmax_t size, const std::string& where) {
  if (size == 0 || size % cifar_record != 0)
    throw_input_error(where, "CIFAR-10 records of " + std::to_string(cifar_record) + " bytes (1 label, 3 x 32 x 32 pixels)",
                      std::to_string(size) + " bytes, not a positive multiple of " + std::to_string(cifar_record) +
                          " (truncated?)");
}

void require_cifar10_labels(const std::vector<std::int64_t>& labels, const std::string& where) {
  for (std::size_t i = 0; i < labels.size(); ++i)
    if (labels[i] >= cifar_classes)
      throw_input_error(where, "labels 0..9", std::to_string(labels[i]) + " in record " + std::to_string(i));
}

void append(std::vector<std::int64_t>& to, const std::vector<std::int64_t>& more) { to.insert(to.end(), more.begin(), more.end()); }

// A selection of images (increasing indices) that the split's `count` images hold, or none.
void require_selection(const std::vector<Index>* only, Index count, const std::string& where) {
  if (!only) return;
  for (std::size_t j = 0; j < only->size(); ++j)
    if ((*only)[j] < 0 || (*only)[j] >= count || (j > 0 && (*only)[j] <= (*only)[j - 1]))
      throw Error(where + ": a selection of images that is not increasing within the " + std::to_string(count) + " images");
}

// The labels of the images `only` names (all if null).
std::vector<std::int64_t> picked(const std::vector<std::int64_t>& labels, const std::vector<Index>* only) {
  if (!only) return labels;
  std::vector<std::int64_t> out;
  for (Index i : *only) out.push_back(labels[static_cast<std::size_t>(i)]);
  return out;
}

// The index of `label` in `classes`, or -1.
std::int64_t position(const std::vector<std::int64_t>& classes, std::int64_t label) {
  const auto it = std::find(classes.begin(), classes.end(), label);
  return it == classes.end() ? -1 : it - classes.begin();
}

void standardise(Matrix& x, const Shape& shape) {
  const Index pixels = shape.pixels();
  for (Index c = 0; c < shape.channels; ++c) {
    auto plane = x.middleRows(c * pixels, pixels).array();
    const double mean = plane.mean();
    const double std = std::sqrt((plane - mean).square().mean());
    if (!(std > 0))
      throw_input_error("data.pixels", "standard pixels of channels that vary over the selected samples (else unit)",
                        "channel " + std::to_string(c) + " constant");
    plane = (plane - mean) / std;
  }
}

std::string idx_prefix(const DataConfig& data) { return data.source == "fashion_mnist" ? data.path + "/" : data.path; }

// The key a file of this source is named by: data.path for a Fashion-MNIST folder given there.
std::string file_key(const DataConfig& data) {
  return data.source == "fashion_mnist" && data.path != fashion_mnist_folder ? "data.path" : "data.source";
}

// Fashion-MNIST's folder exists, else the message says where it comes from.
void require_fashion_folder(const DataConfig& data) {
  if (data.source == "fashion_mnist" && !fs::is_directory(data.path))
    throw_input_error(file_key(data), "the Fashion-MNIST folder " + quoted(data.path) +
                                          " (Debian's dataset-fashion-mnist, see scripts/install-deps; or set data.path)",
                      "no such folder");
}

std::string split_text(const DataConfig& data) {
  return std::string("the ") + (data.test_split ? "test" : "train") + " split of " + quoted(data.path);
}

}  // namespace

bool is_image_source(const std::string& source) {
  return source == "fashion_mnist" || source == "idx" || source == "cifar10";
}

RawImages read_idx(const std::string& prefix, bool test, const std::string& key, const std::vector<Index>* only) {
  const std::string images_path = idx_file(prefix, test, "images-idx3-ubyte", key);
  const std::string labels_path = idx_file(prefix, test, "labels-idx1-ubyte", key);
  RawImages out;
  out.labels = idx_labels(labels_path, key);
  auto [pixels, dims] = read_idx_file(images_path, 3, key, [&](const std::vector<Index>& images) {
    if (static_cast<std::size_t>(images[0]) != out.labels.size())
      throw_input_error(key + ": " + labels_path, std::to_string(images[0]) + " labels, one per image of " + quoted(images_path),
                        std::to_string(out.labels.size()));
    require_selection(only, images[0], key + ": " + images_path);
  }, only);
  out.pixels = std::move(pixels);
  out.labels = picked(out.labels, only);
  out.shape = Shape(1, dims[1], dims[2]);
  return out;
}

std::vector<std::int64_t> read_idx_labels(const std::string& prefix, bool test, const std::string& key) {
  return idx_labels(idx_file(prefix, test, "labels-idx1-ubyte", key), key);
}

RawImages read_cifar10(const std::string& folder, bool test, const std::string& key, const std::vector<Index>* only) {
  RawImages out;
  out.shape = Shape(cifar_channels, cifar_side, cifar_side);
  const std::size_t size = static_cast<std::size_t>(out.shape.size());
  std::size_t next = 0;  // of `only`
  for (const std::string& path : cifar10_files(folder, test)) {
    // Batches are plain files (their labels are counted from the file's size): one that gunzips to more is
    // refused without being read whole. One batch is held at a time.
    require_regular_file(key, path);
    const std::uintmax_t file_bytes = fs::file_size(path);
    const Bytes bytes = read_file_bytes(path, key, static_cast<std::size_t>(file_bytes) + 1);
    if (bytes.size() != file_bytes)
      throw_input_error(key + ": " + path, "a CIFAR-10 batch as a plain file", "a file that reads as more than its size (gzip?)");
    require_cifar10_size(bytes.size(), key + ": " + path);
    const std::size_t records = bytes.size() / cifar_record, before = out.labels.size();
    const std::vector<std::int64_t> labels = labels_of(bytes, 0, cifar_record, records);
    require_cifar10_labels(labels, key + ": " + path);
    append(out.labels, labels);
    for (std::size_t r = 0; r < records; ++r) {
      if (only && (next >= only->size() || static_cast<std::size_t>((*only)[next]) != before + r)) continue;
      ++next;
      const auto record = bytes.begin() + static_cast<std::ptrdiff_t>(r * cifar_record + 1);
      out.pixels.insert(out.pixels.end(), record, record + static_cast<std::ptrdiff_t>(size));
    }
  }
  require_selection(only, static_cast<Index>(out.labels.size()), key + ": " + folder);
  out.labels = picked(out.labels, only);
  return out;
}

std::vector<std::int64_t> read_cifar10_labels(const std::string& folder, bool test, const std::string& key) {
  std::vector<std::int64_t> out;
  for (const std::string& path : cifar10_files(folder, test)) {
    require_regular_file(key, path);
    require_cifar10_size(fs::file_size(path), key + ": " + path);
    std::ifstream file(path, std::ios::binary);
    std::vector<std::int64_t> labels(fs::file_size(path) / cifar_record);
    for (std::size_t r = 0; r < labels.size(); ++r) {
      file.seekg(static_cast<std::streamoff>(r * cifar_record));
      labels[r] = file.get();
    }
    if (!file) throw InputError(key + ": cannot read file " + quoted(path));
    require_cifar10_labels(labels, key + ": " + path);
    append(out, labels);
  }
  return out;
}

std::vector<Index> selected_samples(const std::vector<std::int64_t>& labels, const DataConfig& data,
                                    const std::string& what) {
  for (std::int64_t c : data.classes)
    if (std::find(labels.begin(), labels.end(), c) == labels.end())
      throw_input_error("data.classes", "labels that occur in " + what, std::to_string(c));
  std::vector<Index> kept;
  for (std::size_t i = 0; i < labels.size(); ++i)
    if (data.classes.empty() || position(data.classes, labels[i]) >= 0) kept.push_back(static_cast<Index>(i));
  if (data.n_samples > static_cast<Index>(kept.size()))
    throw_input_error("data.n_samples",
                      "at most the " + std::to_string(kept.size()) + " samples of " + what +
                          (data.classes.empty() ? "" : " in data.classes"),
                      std::to_string(data.n_samples));
  if (data.n_samples > 0) kept.resize(static_cast<std::size_t>(data.n_samples));
  for (std::int64_t c : data.classes)
    if (std::none_of(kept.begin(), kept.end(), [&](Index i) { return labels[static_cast<std::size_t>(i)] == c; }))
      throw_input_error("data.n_samples",
                        "enough samples to keep every class of data.classes (class " + std::to_string(c) +
                            " has none among the first " + std::to_string(kept.size()) + ")",
                        std::to_string(data.n_samples));
  return kept;
}

Dataset select_images(const RawImages& raw, const DataConfig& data, const std::string& what) {
  const std::vector<Index> kept = selected_samples(raw.labels, data, what);
  const Index size = raw.shape.size();
  // As float64 the images take 8 bytes a pixel: refused here if the node cannot hold them at all (the
  // study's memory estimate, which counts them, comes after the data's shape is known).
  const double bytes = 8.0 * static_cast<double>(size) * static_cast<double>(kept.size());
  const double available = static_cast<double>(memory_left_bytes());
  if (available > 0 && bytes > available) {
    char text[160];
    std::snprintf(text, sizeof text, "%zu images of %s (%.1f GiB as float64), %.1f GiB available", kept.size(),
                  raw.shape.text().c_str(), bytes / 1073741824.0, available / 1073741824.0);
    throw InputError("data.source: " + what + ": expected images that fit in memory, got " + text);
  }
  Dataset out;
  out.sample_shape = raw.shape;
  out.x.resize(size, static_cast<Index>(kept.size()));
  Fingerprint stored;
  for (std::size_t j = 0; j < kept.size(); ++j) {
    const std::uint8_t* pixels = raw.pixels.data() + kept[j] * size;
    stored.add("pixels", j * static_cast<std::size_t>(size), pixels, static_cast<std::size_t>(size));
    for (Index f = 0; f < size; ++f) out.x(f, static_cast<Index>(j)) = pixels[f];
    const std::int64_t label = raw.labels[static_cast<std::size_t>(kept[j])];
    out.labels.push_back(data.classes.empty() ? label : position(data.classes, label));
  }
  out.stored_fingerprint = stored.hex();
  if (data.pixels == Pixels::standard)
    standardise(out.x, out.sample_shape);
  else
    out.x /= 255.0;
  return out;
}

// The labels of the split `data` names.
std::vector<std::int64_t> source_labels(const DataConfig& data) {
  require_fashion_folder(data);
  const std::string key = file_key(data);
  return data.source == "cifar10" ? read_cifar10_labels(data.path, data.test_split, key)
                                  : read_idx_labels(idx_prefix(data), data.test_split, key);
}

// The selection is made from the labels first, so that only its images are held (not the split's: 150 MB of
// CIFAR-10 batches for 100 images, on every rank). Selecting again from them keeps them all.
Dataset load_images(const DataConfig& data) {
  const std::string key = file_key(data), what = split_text(data);
  const std::vector<Index> kept = selected_samples(source_labels(data), data, what);
  const RawImages raw = data.source == "cifar10" ? read_cifar10(data.path, data.test_split, key, &kept)
                                                 : read_idx(idx_prefix(data), data.test_split, key, &kept);
  return select_images(raw, data, what);
}

Index count_images(const DataConfig& data) {
  return static_cast<Index>(selected_samples(source_labels(data), data, split_text(data)).size());
}

}  // namespace eomlab
