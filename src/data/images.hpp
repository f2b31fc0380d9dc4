// Image data sets read from files (DESIGN.md §3.6 "Data sources"): MNIST-format IDX files (fashion_mnist,
// idx:PATH; gzipped or not) and the CIFAR-10 binary batches (cifar10:PATH). Every problem with a file
// (missing, truncated, wrong magic number or sizes, images and labels disagreeing) is an InputError naming
// the key and the file; a selection the data cannot give names data.classes or data.n_samples.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/dataset.hpp"

namespace eomlab {

// Debian's dataset-fashion-mnist (data.source = fashion_mnist without data.path).
inline const std::string fashion_mnist_folder = "/usr/share/datasets/fashion-mnist";

// fashion_mnist, idx or cifar10.
bool is_image_source(const std::string& source);

// One split as stored: sample i's pixels are bytes [i·size, (i+1)·size) of `pixels` in torch's [C, H, W]
// order (size = shape.size()), its label labels[i].
struct RawImages {
  Shape shape;
  std::vector<std::uint8_t> pixels;
  std::vector<std::int64_t> labels;
};

// PREFIX + "train-images-idx3-ubyte" and PREFIX + "train-labels-idx1-ubyte" ("t10k-" for test), each as
// named or with ".gz"; a prefix that is a folder reads the files in it. Images [N, 1, H, W]. With `only`
// (increasing indices), the images it names alone, in that order, with their labels; the whole files are
// read and checked all the same, but only those images are held.
RawImages read_idx(const std::string& prefix, bool test, const std::string& key, const std::vector<Index>* only = nullptr);
std::vector<std::int64_t> read_idx_labels(const std::string& prefix, bool test, const std::string& key);

// FOLDER/data_batch_1.bin … data_batch_5.bin (train) or FOLDER/test_batch.bin (test): records of one label
// byte (0..9) and 3072 pixel bytes (R, G, B planes of 32 × 32, row-major). Images [N, 3, 32, 32]; `only`
// as for read_idx.
RawImages read_cifar10(const std::string& folder, bool test, const std::string& key,
                       const std::vector<Index>* only = nullptr);
std::vector<std::int64_t> read_cifar10_labels(const std::string& folder, bool test, const std::string& key);

// The samples data.classes keeps (all if empty), in file order, the first data.n_samples of them (0: all).
// `what` names the split in messages ("the train split of '…'").
std::vector<Index> selected_samples(const std::vector<std::int64_t>& labels, const DataConfig& data,
                                    const std::string& what);

// The selected samples as columns with labels relabelled by their position in data.classes, pixels as
// data.pixels says: standard (per channel, mean 0 and population std 1 over the selection) or unit (x/255);
// stored_fingerprint is of the selected pixel bytes.
Dataset select_images(const RawImages& raw, const DataConfig& data, const std::string& what);

// The image source of `data` read and selected: a Dataset with labels and the images' shape.
Dataset load_images(const DataConfig& data);

// The samples load_images gives, from the labels alone (for the memory estimate).
Index count_images(const DataConfig& data);

}  // namespace eomlab
