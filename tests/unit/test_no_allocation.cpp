// Issue #7: no allocation inside the integrator's loop. This program counts every malloc (Eigen's
// matrices allocate through it) and checks that, once the shapes are known, field evaluations and
// integrator steps allocate nothing: the fast path (gradient, HVP, gf and eom1 fields) and the jet
// path (T[u, v], eom2 and eom3 fields, normalized layers, the deep networks' layers) alike.
#include <gtest/gtest.h>

#include <link.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "flow/dop853.hpp"
#include "model/buffer.hpp"
#include "flow/flow.hpp"
#include "support/images.hpp"
#include "support/mixture.hpp"
#include "support/model.hpp"

extern "C" void* __libc_malloc(std::size_t);
extern "C" void* __libc_calloc(std::size_t, std::size_t);
extern "C" void* __libc_realloc(void*, std::size_t);

namespace {
std::atomic<long> allocations{0};

// OpenBLAS's own small-matrix GEMM kernels allocate a buffer per call at some small shapes (not eomlab's,
// and not at the shapes of real networks): malloc's direct callers in its library are not counted.
struct Range {
  std::uintptr_t begin = 0, end = 0;
};
Range blas_text;

int find_blas(dl_phdr_info* info, std::size_t, void*) {
  if (!info->dlpi_name || !std::strstr(info->dlpi_name, "openblas")) return 0;
  for (int k = 0; k < info->dlpi_phnum; ++k) {
    const auto& h = info->dlpi_phdr[k];
    if (h.p_type == PT_LOAD && (h.p_flags & PF_X)) blas_text = {info->dlpi_addr + h.p_vaddr, info->dlpi_addr + h.p_vaddr + h.p_memsz};
  }
  return 1;
}

void count_from(const void* caller) {
  const auto at = reinterpret_cast<std::uintptr_t>(caller);
  if (at < blas_text.begin || at >= blas_text.end) allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

// glibc lets a program interpose malloc; these count and forward to glibc's own.
extern "C" void* malloc(std::size_t n) {
  count_from(__builtin_return_address(0));
  return __libc_malloc(n);
}
extern "C" void* calloc(std::size_t n, std::size_t size) {
  count_from(__builtin_return_address(0));
  return __libc_calloc(n, size);
}
extern "C" void* realloc(void* p, std::size_t n) {
  count_from(__builtin_return_address(0));
  return __libc_realloc(p, n);
}

using namespace eomlab;

namespace {

template <class F>
long allocations_during(F&& f) {
  const long before = allocations.load();
  f();
  return allocations.load() - before;
}

struct Case {
  Normalization normalization;
  int order;
  Activation activation = Activation::tanh;
};

class NoAllocation : public ::testing::TestWithParam<Case> {};

}  // namespace

TEST(NoAllocationCounter, CountsEigenAllocations) {
  EXPECT_GE(allocations_during([] {
              Matrix m(40, 40);
              m.setZero();
            }),
            1);
}

TEST_P(NoAllocation, FieldEvaluationsAndIntegratorSteps) {
  const auto [normalization, order, activation] = GetParam();
  const std::vector<Index> widths{5, 12, 9, 3};
  const Dataset d = test::mixture(48, widths, 2);
  Model mlp = test::mlp_model(widths, activation, LossKind::cross_entropy, normalization);
  const Vector theta0 = mlp.initial_parameters(1);
  const WholeVector whole(mlp.n_params());
  ModelObjective objective(std::move(mlp), d, d.n_samples(), 1e-3, whole);
  const auto field_owner = make_flow("eom" + std::to_string(order), objective, "gd", 0.05);
  Flow& field = *field_owner;
  Dop853 integrator([&](const Vector& y, Vector& dydt) { field(y, dydt); }, {1e-9, 1e-11, 0}, whole,
                    objective.dimension());
  Vector y = theta0, out;
  integrator.start(0.0, y);
  ASSERT_EQ(integrator.advance_to(0.05, y), Dop853::Status::ok);  // warm-up: every buffer takes its shape
  const long field_evaluations = field.evaluations();
  EXPECT_EQ(allocations_during([&] { ASSERT_EQ(integrator.advance_to(0.3, y), Dop853::Status::ok); }), 0);
  EXPECT_GT(field.evaluations(), field_evaluations + 12);  // it did take steps
  Vector g(y.size()), hv(y.size()), t(y.size());
  objective.value_and_gradient(y, g);
  objective.hessian_vector(y, g, hv);
  objective.third_order(y, g, hv, t);
  y[0] += 1e-3;
  EXPECT_EQ(allocations_during([&] {
              objective.value_and_gradient(y, g);
              objective.hessian_vector(y, g, hv);
              objective.third_order(y, g, hv, t);
            }),
            0);
}

INSTANTIATE_TEST_SUITE_P(All, NoAllocation,
                         ::testing::Values(Case{Normalization::none, 0}, Case{Normalization::none, 1},
                                           Case{Normalization::none, 2}, Case{Normalization::none, 3},
                                           Case{Normalization::layer, 1}, Case{Normalization::layer, 3},
                                           Case{Normalization::weight, 2}, Case{Normalization::none, 2, Activation::gelu},
                                           Case{Normalization::none, 2, Activation::softplus}));

// The jet path of the deep networks (conv, pooling, batchnorm, layernorm, residual blocks): gradient, HVP,
// T[u, v] and the eom1 field at a new θ, once every buffer has seen its shapes.
class NoAllocationDeep : public ::testing::TestWithParam<const char*> {};

TEST_P(NoAllocationDeep, DerivativesAndFields) {
  dl_iterate_phdr(find_blas, nullptr);
  const Shape in(2, 8, 8);
  Model model = test::architecture_model(GetParam(), in, LossKind::cross_entropy);
  const Dataset d = test::random_images(in, 12, LossKind::cross_entropy, model.n_outputs(), 5);
  Vector y = model.initial_parameters(1);
  const WholeVector whole(model.n_params());
  ModelObjective objective(std::move(model), d, d.n_samples(), 1e-3, whole);
  const auto eom1 = make_flow("eom1", objective, "gd", 0.05);
  Vector g(y.size()), hv(y.size()), t(y.size()), field(y.size());
  const auto evaluate_all = [&] {
    objective.value_and_gradient(y, g);
    objective.hessian_vector(y, g, hv);
    objective.third_order(y, g, hv, t);
    (*eom1)(y, field);
  };
  evaluate_all();  // warm-up: every buffer takes its shape
  y[0] += 1e-3;
  evaluate_all();
  y[1] += 1e-3;
  EXPECT_EQ(allocations_during(evaluate_all), 0);
  EXPECT_GT(t.norm(), 0.0);
}

INSTANTIATE_TEST_SUITE_P(
    All, NoAllocationDeep,
    ::testing::Values("conv(4, 3, pad=1), tanh, avgpool(2), conv(4, 3, pad=1), tanh, avgpool(2), flatten, dense(3)",
                      "conv(4, 3, pad=1), batchnorm, tanh, avgpool(2), residual(conv(4, 3, pad=1), batchnorm, tanh, "
                      "conv(4, 3, pad=1), batchnorm), tanh, globalavgpool, dense(3)",
                      "conv(4, 3, stride=2), layernorm, relu, maxpool(2), flatten, dense(5, weightnorm=on), silu, dense(3)"));

// Minibatch SGD's eom1 on the fast path: the epoch's batches as blocks of one pass (BatchPartition), the
// batch gradients turned into the directions in place, at new points θ.
TEST(NoAllocationSgd, Eom1FieldEvaluations) {
  const std::vector<Index> widths{5, 12, 9, 3};
  const Dataset d = test::mixture(48, widths, 2);
  Model mlp = test::mlp_model(widths, Activation::tanh, LossKind::cross_entropy);
  Vector y = mlp.initial_parameters(1);
  const WholeVector whole(mlp.n_params());
  ModelObjective objective(std::move(mlp), d, d.n_samples(), 1e-3, whole);
  MethodSettings settings;
  settings.batch_size = 8;
  const auto field = make_flow("eom1", objective, "sgd", 0.05, settings);
  Vector out;
  (*field)(y, out);  // warm-up: every buffer takes its shape
  y[0] += 1e-3;
  (*field)(y, out);
  EXPECT_EQ(allocations_during([&] {
              for (int k = 0; k < 5; ++k) {
                y[1] += 1e-3;
                (*field)(y, out);
              }
            }),
            0);
  EXPECT_GT(out.norm(), 0.0);
}

TEST(Buffer, ReusesItsStorageAndBehavesLikeAMatrix) {
  Buffer b;
  b = Matrix::Constant(6, 5, 2.0);
  EXPECT_EQ(b.rows(), 6);
  EXPECT_EQ(b.cols(), 5);
  EXPECT_EQ(b.sum(), 60.0);
  const double* storage = b.data();
  EXPECT_EQ(allocations_during([&] {
              b.resize(3, 4);  // within capacity: the same memory, a new shape
              b.setOnes();
              b = Matrix::Identity(5, 6);  // still within capacity
            }),
            0);
  EXPECT_EQ(b.data(), storage);
  EXPECT_EQ(b.rows(), 5);
  EXPECT_EQ(b.trace(), 5.0);
  EXPECT_GE(allocations_during([&] { b.resize(10, 10); }), 1);  // growing allocates
  b.setConstant(1.5);
  Buffer copy = b;
  EXPECT_NE(copy.data(), b.data());
  EXPECT_EQ(Matrix(copy), Matrix(b));
  Buffer moved = std::move(copy);
  EXPECT_EQ(moved.rows(), 10);
  EXPECT_EQ(moved.sum(), 150.0);
  Buffer other;
  other = Matrix::Zero(2, 3);
  std::swap(moved, other);
  EXPECT_EQ(moved.rows(), 2);
  EXPECT_EQ(other.sum(), 150.0);
}

// copy_streaming: exactly [0, n) written, with the source's bits (NaN payloads, -0.0 included), at every
// alignment of the destination and length around the 4-entry stores; nothing allocated.
TEST(Buffer, CopyStreamingCopiesExactlyItsRangeAtAnyAlignment) {
  std::vector<double> from(64), to(80);
  for (std::size_t i = 0; i < from.size(); ++i) from[i] = std::ldexp(static_cast<double>(i) - 20.5, static_cast<int>(i % 7) - 3);
  from[5] = -0.0;
  from[9] = std::numeric_limits<double>::quiet_NaN();
  std::uint64_t payload = 0x7ff8000000012345ull;
  std::memcpy(&from[13], &payload, sizeof payload);
  for (Index offset = 0; offset < 8; ++offset)
    for (Index n = 0; n <= 41; ++n) {
      std::fill(to.begin(), to.end(), 7.25);
      EXPECT_EQ(allocations_during([&] { copy_streaming(from.data() + 1, n, to.data() + offset); }), 0);
      for (Index i = 0; i < static_cast<Index>(to.size()); ++i) {
        const bool inside = i >= offset && i < offset + n;
        const double expected = inside ? from[static_cast<std::size_t>(i - offset + 1)] : 7.25;
        ASSERT_EQ(std::memcmp(&to[static_cast<std::size_t>(i)], &expected, sizeof(double)), 0)
            << "offset " << offset << ", n " << n << ", entry " << i;
      }
    }
}
