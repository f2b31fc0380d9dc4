// Shared pieces of the benchmark programs: timing under MPI, and reading network widths.
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/dataset.hpp"
#include "dist/comm.hpp"
#include "model/model.hpp"

namespace eomlab::bench {

// The benchmarks' network: a tanh MLP of these widths under softmax cross-entropy.
inline Model tanh_mlp(const std::vector<Index>& widths) {
  ModelConfig config;
  config.layers = widths;
  config.activation = Activation::tanh;
  config.loss = LossKind::cross_entropy;
  return make_model(config);
}

// "784,256,256,10" -> {784, 256, 256, 10}; empty text -> empty list.
inline std::vector<Index> parse_widths(const std::string& text) {
  std::vector<Index> widths;
  for (std::size_t at = 0; !text.empty() && at != std::string::npos;) {
    const std::size_t next = text.find(',', at);
    widths.push_back(std::stol(text.substr(at, next == std::string::npos ? next : next - at)));
    at = next == std::string::npos ? next : next + 1;
  }
  return widths;
}

// Widths from $EOMLAB_WIDTHS, else input, hidden..., classes of the labelled data set.
inline std::vector<Index> widths_for(const Dataset& data, const std::vector<Index>& hidden) {
  const char* env = std::getenv("EOMLAB_WIDTHS");
  std::vector<Index> widths = parse_widths(env ? env : "");
  if (!widths.empty()) return widths;
  std::int64_t classes = 0;
  for (std::int64_t y : data.labels) classes = std::max(classes, y + 1);
  widths.push_back(data.n_features());
  widths.insert(widths.end(), hidden.begin(), hidden.end());
  widths.push_back(static_cast<Index>(classes));
  return widths;
}

// Moves θ by one ulp in its first entry: the next evaluation is at a fresh point, so nothing cached
// from the previous one (the gathered θ, a forward pass) is reused.
inline void move_to_fresh_point(Vector& theta) { theta[0] = std::nextafter(theta[0], 1.0); }

// Median wall time of `repeats` calls (after two warm-ups), each bracketed by barriers so every
// rank's share is included.
template <class F>
double median_seconds(const dist::Comm& comm, int repeats, F&& evaluate) {
  std::vector<double> t;
  for (int r = 0; r < repeats + 2; ++r) {
    comm.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    evaluate();
    comm.barrier();
    if (r >= 2) t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace eomlab::bench
