// The image data sources (data/images.hpp) on small files this test writes in the IDX and CIFAR-10
// formats: pixels, layout and labels exactly; class selection, first N, pixel scaling; bad files. And
// data.shape of the synthetic sources.
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "data/images.hpp"
#include "data/synthetic.hpp"

using namespace eomlab;
namespace fs = std::filesystem;

namespace {

using Bytes = std::vector<std::uint8_t>;

// A fresh empty folder under the test's temporary directory.
std::string fresh_folder(const std::string& name) {
  const fs::path p = fs::path(::testing::TempDir()) / ("eomlab_images_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

void write_raw(const std::string& path, const Bytes& bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void write_gz(const std::string& path, const Bytes& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  gzclose(f);
}

void put_big_endian(Bytes& b, std::uint32_t x) {
  for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<std::uint8_t>(x >> shift));
}

// An IDX file of unsigned bytes: magic 0x0000080R, the dimensions big-endian, then the data.
Bytes idx_bytes(const std::vector<std::uint32_t>& dims, const Bytes& data) {
  Bytes b{0, 0, 0x08, static_cast<std::uint8_t>(dims.size())};
  for (std::uint32_t d : dims) put_big_endian(b, d);
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

// Three 2 x 3 images whose pixel (n, h, w) is 10n + 3h + w, labels 2, 0, 1 (train) or two (t10k).
const Bytes train_pixels = {0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15, 20, 21, 22, 23, 24, 25};
const Bytes train_labels = {2, 0, 1};

void write_idx_pair(const std::string& prefix, bool gz) {
  const auto write = gz ? write_gz : write_raw;
  const std::string ext = gz ? ".gz" : "";
  write(prefix + "train-images-idx3-ubyte" + ext, idx_bytes({3, 2, 3}, train_pixels));
  write(prefix + "train-labels-idx1-ubyte" + ext, idx_bytes({3}, train_labels));
  write(prefix + "t10k-images-idx3-ubyte" + ext, idx_bytes({2, 2, 3}, Bytes(12, 7)));
  write(prefix + "t10k-labels-idx1-ubyte" + ext, idx_bytes({2}, {4, 5}));
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

void expect_train_images(const RawImages& raw) {
  EXPECT_EQ(raw.shape, Shape(1, 2, 3));
  EXPECT_EQ(raw.labels, (std::vector<std::int64_t>{2, 0, 1}));
  EXPECT_EQ(raw.pixels, train_pixels);
}

// A CIFAR-10 record: label, then R, G, B planes of 32 x 32 with pixel (c, h, w) = (seed + 7c + 3h + w) mod 256.
Bytes cifar_record(std::uint8_t label, int seed) {
  Bytes r{label};
  for (int c = 0; c < 3; ++c)
    for (int h = 0; h < 32; ++h)
      for (int w = 0; w < 32; ++w) r.push_back(static_cast<std::uint8_t>((seed + 7 * c + 3 * h + w) % 256));
  return r;
}

// data_batch_i.bin holds records of labels i-1 and 9-(i-1) (seeds 2i and 2i+1); test_batch.bin one of label 3.
std::string write_cifar(const std::string& name) {
  const std::string folder = fresh_folder(name);
  for (int i = 1; i <= 5; ++i) {
    Bytes b = cifar_record(static_cast<std::uint8_t>(i - 1), 2 * i);
    const Bytes second = cifar_record(static_cast<std::uint8_t>(10 - i), 2 * i + 1);
    b.insert(b.end(), second.begin(), second.end());
    write_raw(folder + "/data_batch_" + std::to_string(i) + ".bin", b);
  }
  write_raw(folder + "/test_batch.bin", cifar_record(3, 100));
  return folder;
}

DataConfig idx_config(const std::string& prefix) {
  DataConfig d;
  d.source = "idx";
  d.path = prefix;
  d.n_samples = 0;
  return d;
}

}  // namespace

TEST(Images, IdxRawFilesByPrefix) {
  const std::string folder = fresh_folder("raw");
  write_idx_pair(folder + "/mine-", false);
  expect_train_images(read_idx(folder + "/mine-", false, "data.source"));
  const RawImages test = read_idx(folder + "/mine-", true, "data.source");
  EXPECT_EQ(test.labels, (std::vector<std::int64_t>{4, 5}));
  EXPECT_EQ(test.pixels, Bytes(12, 7));
}

TEST(Images, IdxGzippedFilesInAFolder) {
  const std::string folder = fresh_folder("gz");
  write_idx_pair(folder + "/", true);
  expect_train_images(read_idx(folder, false, "data.source"));
  EXPECT_EQ(read_idx_labels(folder, false, "data.source"), (std::vector<std::int64_t>{2, 0, 1}));
}

TEST(Images, IdxDatasetColumnsAreTheImagesRowMajor) {
  const std::string folder = fresh_folder("dataset");
  write_idx_pair(folder + "/", true);
  DataConfig d = idx_config(folder);
  d.pixels = Pixels::unit;
  const Dataset data = load_images(d);
  ASSERT_EQ(data.n_samples(), 3);
  ASSERT_EQ(data.n_features(), 6);
  EXPECT_EQ(data.shape(), Shape(1, 2, 3));
  for (Index n = 0; n < 3; ++n)
    for (Index h = 0; h < 2; ++h)
      for (Index w = 0; w < 3; ++w) EXPECT_EQ(data.x(3 * h + w, n), static_cast<double>(10 * n + 3 * h + w) / 255.0);
  EXPECT_EQ(data.labels, (std::vector<std::int64_t>{2, 0, 1}));
  EXPECT_EQ(count_images(d), 3);
}

TEST(Images, ClassesAreKeptInFileOrderAndRelabelledByTheirPosition) {
  const std::string folder = fresh_folder("classes");
  write_idx_pair(folder + "/", false);
  DataConfig d = idx_config(folder);
  d.classes = {1, 2};
  d.pixels = Pixels::unit;
  const Dataset data = load_images(d);
  ASSERT_EQ(data.n_samples(), 2);
  EXPECT_EQ(data.labels, (std::vector<std::int64_t>{1, 0}));  // samples 0 (label 2) and 2 (label 1)
  EXPECT_EQ(data.x(0, 0), 0.0);
  EXPECT_EQ(data.x(5, 1), 25.0 / 255.0);
  EXPECT_EQ(count_images(d), 2);
}

TEST(Images, FirstNOfTheSelection) {
  const std::string folder = fresh_folder("first");
  write_idx_pair(folder + "/", false);
  DataConfig d = idx_config(folder);
  d.n_samples = 2;
  d.pixels = Pixels::unit;
  const Dataset data = load_images(d);
  EXPECT_EQ(data.labels, (std::vector<std::int64_t>{2, 0}));
  EXPECT_EQ(data.x(1, 1), 11.0 / 255.0);
  EXPECT_EQ(count_images(d), 2);
}

TEST(Images, MoreSamplesThanTheSelectionOrAnAbsentOrEmptyClassIsBadInput) {
  const std::string folder = fresh_folder("too_many");
  write_idx_pair(folder + "/", false);
  DataConfig d = idx_config(folder);
  d.classes = {0, 2};
  d.n_samples = 3;
  EXPECT_NE(error_of([&] { load_images(d); }).find("data.n_samples: expected at most the 2 samples"), std::string::npos);
  EXPECT_NE(error_of([&] { count_images(d); }).find("data.n_samples"), std::string::npos);
  d.classes = {0, 1, 2};  // the first 2 of the selection have labels 2 and 0: class 1 would have no sample
  d.n_samples = 2;
  EXPECT_NE(error_of([&] { load_images(d); }).find("data.n_samples: expected enough samples to keep every class of "
                                                   "data.classes (class 1 has none among the first 2)"),
            std::string::npos);
  d.n_samples = 0;
  d.classes = {0, 9};
  EXPECT_NE(error_of([&] { load_images(d); }).find("data.classes: expected labels that occur in the train split"),
            std::string::npos);
}

TEST(Images, StandardPixelsHaveMeanZeroAndStdOnePerChannel) {
  RawImages raw;
  raw.shape = Shape(2, 1, 2);
  raw.pixels = {0, 10, 100, 101, 255, 30, 0, 7, 9, 90, 200, 3};  // channel 0: 0,10,255,30,9,90; channel 1: 100,101,0,7,200,3
  raw.labels = {0, 1, 0};
  DataConfig d;
  d.n_samples = 0;
  const Dataset data = select_images(raw, d, "test data");
  for (Index c = 0; c < 2; ++c) {
    const Eigen::ArrayXXd plane = data.x.middleRows(2 * c, 2).array();
    EXPECT_NEAR(plane.mean(), 0.0, 1e-12);
    EXPECT_NEAR(std::sqrt(plane.square().mean()), 1.0, 1e-12);
  }
  // Channel 0 by hand: mean 394/6, the population std from the sum of squares.
  const double mean = 394.0 / 6, std = std::sqrt((0 + 100 + 65025 + 900 + 81 + 8100) / 6.0 - mean * mean);
  EXPECT_NEAR(data.x(1, 1), (30 - mean) / std, 1e-12);
}

TEST(Images, StandardPixelsOfAConstantChannelAreBadInput) {
  RawImages raw;
  raw.shape = Shape(1, 1, 2);
  raw.pixels = {5, 5, 5, 5};
  raw.labels = {0, 1};
  DataConfig d;
  d.n_samples = 0;
  EXPECT_NE(error_of([&] { select_images(raw, d, "test data"); }).find("data.pixels"), std::string::npos);
}

TEST(Images, IdxWrongMagicTruncatedAndMismatchedFilesAreBadInput) {
  const std::string folder = fresh_folder("bad_idx");
  const std::string images = folder + "/train-images-idx3-ubyte", labels = folder + "/train-labels-idx1-ubyte";
  write_idx_pair(folder + "/", false);
  Bytes wrong = idx_bytes({3, 2, 3}, train_pixels);
  wrong[3] = 2;
  write_raw(images, wrong);
  std::string e = error_of([&] { read_idx(folder, false, "data.source"); });
  EXPECT_NE(e.find("data.source: " + images + ": expected the IDX magic number 0x00000803"), std::string::npos) << e;

  Bytes truncated = idx_bytes({3, 2, 3}, train_pixels);
  truncated.pop_back();
  write_raw(images, truncated);
  e = error_of([&] { read_idx(folder, false, "data.source"); });
  EXPECT_NE(e.find(images), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;

  write_raw(images, idx_bytes({3, 2, 3}, train_pixels));
  write_raw(labels, idx_bytes({2}, {0, 1}));
  e = error_of([&] { read_idx(folder, false, "data.source"); });
  EXPECT_NE(e.find("data.source: " + labels + ": expected 3 labels"), std::string::npos) << e;

  write_raw(labels, idx_bytes({3, 1, 1}, train_labels));
  e = error_of([&] { read_idx(folder, false, "data.source"); });
  EXPECT_NE(e.find("IDX magic number 0x00000801"), std::string::npos) << e;

  // Dimensions whose product passes 2^63 bytes (the count once overflowed into a negative number): refused
  // from the header, before anything is read (as more than the node has, where its memory is known).
  write_idx_pair(folder + "/", false);
  write_raw(labels, idx_bytes({4}, {0, 1, 0, 1}));
  write_raw(images, idx_bytes({4, 2147483648u, 2147483648u}, {}));
  e = error_of([&] { read_idx(folder, false, "data.source"); });
  EXPECT_NE(e.find("data.source: " + images + ": expected "), std::string::npos) << e;
  EXPECT_NE(e.find("1.845e+19 bytes (its dimensions 4 x 2147483648 x 2147483648)"), std::string::npos) << e;
}

TEST(Images, ImagesBeyondTheNodesMemoryAreRefusedBeforeTheyAreConverted) {
  // One image of 200000 x 200000 pixels: 320 GB as float64 (its pixels are never read).
  RawImages raw;
  raw.shape = Shape(1, 200000, 200000);
  raw.labels = {0};
  DataConfig d;
  d.n_samples = 0;
  const std::string e = error_of([&] { select_images(raw, d, "test data"); });
  EXPECT_EQ(e.rfind("data.source: test data: expected images that fit in memory, got 1 images of 1x200000x200000 (298.0 GiB "
                    "as float64), ", 0), 0u) << e;
}

TEST(Images, TruncatedGzipIsBadInput) {
  const std::string folder = fresh_folder("bad_gz");
  write_idx_pair(folder + "/", true);
  const std::string images = folder + "/train-images-idx3-ubyte.gz";
  std::ifstream in(images, std::ios::binary);
  Bytes gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  gz.resize(gz.size() - 12);
  write_raw(images, gz);
  const std::string e = error_of([&] { read_idx(folder, false, "data.path"); });
  EXPECT_EQ(e.rfind("data.path: ", 0), 0u) << e;
  EXPECT_NE(e.find(images), std::string::npos) << e;
}

TEST(Images, MissingIdxFileIsBadInputNamingBothNames) {
  const std::string folder = fresh_folder("missing");
  const std::string e = error_of([&] { read_idx(folder, true, "data.source"); });
  EXPECT_NE(e.find("data.source: expected the IDX file '" + folder + "/t10k-"), std::string::npos) << e;
}

TEST(Images, CifarPixelsAreTheRecordsChannelMajorAndBatchesInOrder) {
  const std::string folder = write_cifar("cifar");
  const RawImages raw = read_cifar10(folder, false, "data.source");
  EXPECT_EQ(raw.shape, Shape(3, 32, 32));
  EXPECT_EQ(raw.labels, (std::vector<std::int64_t>{0, 9, 1, 8, 2, 7, 3, 6, 4, 5}));
  EXPECT_EQ(read_cifar10_labels(folder, false, "data.source"), raw.labels);
  DataConfig d;
  d.source = "cifar10";
  d.path = folder;
  d.n_samples = 0;
  d.pixels = Pixels::unit;
  const Dataset data = load_images(d);
  ASSERT_EQ(data.n_samples(), 10);
  ASSERT_EQ(data.n_features(), 3072);
  for (Index n = 0; n < 10; ++n) {
    const int seed = 2 * static_cast<int>(n / 2 + 1) + static_cast<int>(n % 2);
    for (Index c : {0, 1, 2})
      for (Index h : {0, 5, 31})
        for (Index w : {0, 17, 31})
          EXPECT_EQ(data.x(c * 1024 + h * 32 + w, n), static_cast<double>((seed + 7 * c + 3 * h + w) % 256) / 255.0) << n << c << h << w;
  }
  const RawImages test = read_cifar10(folder, true, "data.source");
  EXPECT_EQ(test.labels, (std::vector<std::int64_t>{3}));
}

TEST(Images, CifarTruncatedFileOrBadLabelIsBadInput) {
  const std::string folder = write_cifar("bad_cifar");
  const std::string batch = folder + "/data_batch_3.bin";
  Bytes b = cifar_record(1, 0);
  b.pop_back();
  write_raw(batch, b);
  for (const std::string& e : {error_of([&] { read_cifar10(folder, false, "data.source"); }),
                               error_of([&] { read_cifar10_labels(folder, false, "data.source"); })}) {
    EXPECT_EQ(e.rfind("data.source: " + batch + ": expected CIFAR-10 records of 3073 bytes", 0), 0u) << e;
    EXPECT_NE(e.find("3072 bytes"), std::string::npos) << e;
  }
  write_raw(batch, cifar_record(10, 0));
  const std::string e = error_of([&] { read_cifar10(folder, false, "data.source"); });
  EXPECT_NE(e.find(batch + ": expected labels 0..9, got 10"), std::string::npos) << e;
  fs::remove(batch);
  EXPECT_NE(error_of([&] { read_cifar10(folder, false, "data.source"); }).find(batch), std::string::npos);
}

TEST(Images, SyntheticSamplesCarryDataShape) {
  DataConfig d;
  d.n_samples = 4;
  d.n_features = 12;
  d.n_classes = 3;
  ModelConfig m;
  m.layers = {12, 3};
  EXPECT_EQ(make_synthetic(d, m).shape(), Shape(12));
  d.shape = Shape(3, 2, 2);
  for (const char* source : {"gaussian_mixture", "teacher"}) {
    d.source = source;
    EXPECT_EQ(make_synthetic(d, m).shape(), Shape(3, 2, 2)) << source;
  }
}

// A selection (increasing indices) gives its images alone, in order, with their labels: the bytes of the
// whole read at those places, across the reader's pieces (IDX, plain or gzipped) and across batch files
// (CIFAR-10).
TEST(Images, ASelectionHoldsItsImagesAlone) {
  for (bool gz : {false, true}) {
    const std::string folder = fresh_folder(gz ? "only_gz" : "only");
    write_idx_pair(folder + "/", gz);
    const RawImages all = read_idx(folder, false, "data.source");
    const std::vector<Index> only{0, 2};
    const RawImages some = read_idx(folder, false, "data.source", &only);
    EXPECT_EQ(some.shape, all.shape);
    EXPECT_EQ(some.labels, (std::vector<std::int64_t>{2, 1}));
    Bytes expected(all.pixels.begin(), all.pixels.begin() + 6);
    expected.insert(expected.end(), all.pixels.begin() + 12, all.pixels.end());
    EXPECT_EQ(some.pixels, expected);
    const std::vector<Index> none;
    EXPECT_TRUE(read_idx(folder, false, "data.source", &none).pixels.empty());
  }
  const std::string folder = write_cifar("only_cifar");
  const RawImages all = read_cifar10(folder, false, "data.source");
  const std::vector<Index> only{1, 2, 7, 9};  // batches 1, 2, 4 and 5
  const RawImages some = read_cifar10(folder, false, "data.source", &only);
  ASSERT_EQ(some.pixels.size(), 4u * 3072u);
  for (std::size_t j = 0; j < only.size(); ++j) {
    const auto i = static_cast<std::size_t>(only[j]);
    EXPECT_EQ(some.labels[j], all.labels[i]);
    EXPECT_TRUE(std::equal(some.pixels.begin() + static_cast<std::ptrdiff_t>(j * 3072), some.pixels.begin() + static_cast<std::ptrdiff_t>((j + 1) * 3072),
                           all.pixels.begin() + static_cast<std::ptrdiff_t>(i * 3072)))
        << "image " << i;
  }
  // Images across the reader's 1 MiB pieces: 2000 images of 28 x 28 (1.5 MiB); image 1337 spans the
  // first boundary (its bytes 16 + 1337·784 .. + 784 hold 1048576).
  const std::string big = fresh_folder("only_big") + "/";
  Bytes pixels(2000 * 784);
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<std::uint8_t>((i / 784 * 7 + i % 784) % 251);
  for (bool gz : {false, true}) {
    const auto write = gz ? write_gz : write_raw;
    const std::string ext = gz ? ".gz" : "";
    write(big + "train-images-idx3-ubyte" + ext, idx_bytes({2000, 28, 28}, pixels));
    write(big + "train-labels-idx1-ubyte" + ext, idx_bytes({2000}, Bytes(2000, 3)));
    const std::vector<Index> across{0, 1336, 1337, 1338, 1999};
    const RawImages picked = read_idx(big, false, "data.source", &across);
    ASSERT_EQ(picked.pixels.size(), across.size() * 784u);
    for (std::size_t j = 0; j < across.size(); ++j)
      EXPECT_TRUE(std::equal(picked.pixels.begin() + static_cast<std::ptrdiff_t>(j * 784),
                             picked.pixels.begin() + static_cast<std::ptrdiff_t>((j + 1) * 784),
                             pixels.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(across[j]) * 784)))
          << "image " << across[j] << (gz ? " (gzip)" : "");
    fs::remove(big + "train-images-idx3-ubyte" + ext);
    fs::remove(big + "train-labels-idx1-ubyte" + ext);
  }
  // A truncated file is refused whatever the selection reads of it.
  const std::string prefix = fresh_folder("only_cut") + "/";
  write_idx_pair(prefix, false);
  Bytes cut = idx_bytes({3, 2, 3}, train_pixels);
  cut.pop_back();
  write_raw(prefix + "train-images-idx3-ubyte", cut);
  const std::vector<Index> first{0};
  EXPECT_NE(error_of([&] { read_idx(prefix, false, "data.source", &first); }).find("(truncated)"), std::string::npos);
}
