// Time per gradient, HVP and T[u, v] of the example CNN (examples target: 1000 images 1x28x28,
// conv(32,3,pad=1), tanh, avgpool(2), conv(32,3,pad=1), tanh, avgpool(2), flatten, dense(10), cross
// entropy), beside the plain GEMMs of the same shapes as one gradient (the conv lowering's chunks,
// model/conv_lowering.hpp): the speed the gradient can hope for. Counters as in bench_derivatives:
// GFLOPs (gemm()'s operations per second) and in_gradients (time as a multiple of one gradient). `vgg`:
// a VGG-like net with batchnorm, relu, maxpool and a stride-2 conv on 200 images 3x32x32 (its time goes
// mostly to batchnorm's and maxpool's passes over memory, not to products).
//   build/bench/bench_conv [--benchmark_filter=small]
#include "bench_timed.hpp"
#include "model/blas.hpp"
#include "model/conv_lowering.hpp"

using namespace eomlab;

namespace {

struct Network {
  std::string architecture;
  Shape input;
  Index samples, classes;
  std::vector<ConvGeometry> convs;  // for the plain GEMMs
  Index dense_in;
};

ConvGeometry conv(Index c, Index h, Index out, Index k, Index pad) {
  ConvGeometry g;
  g.out = out;
  g.k = k;
  g.pad = pad;
  g.set_input({c, h, h});
  return g;
}

const Network example{"conv(32, 3, pad=1), tanh, avgpool(2), conv(32, 3, pad=1), tanh, avgpool(2), flatten, dense(10)",
                      {1, 28, 28}, 1000, 10, {conv(1, 28, 32, 3, 1), conv(32, 14, 32, 3, 1)}, 32 * 7 * 7};
// A VGG-like net with batchnorm, relu, maxpool and a stride-2 conv on CIFAR-sized images (no plain-GEMM twin).
const Network vgg{"conv(32, 3, pad=1), batchnorm, relu, maxpool(2), conv(64, 3, pad=1), batchnorm, relu, maxpool(2), "
                  "conv(64, 3, stride=2, pad=1), batchnorm, relu, globalavgpool, dense(10)",
                  {3, 32, 32}, 200, 10, {}, 64};
const Network small{"conv(4, 3, pad=1), tanh, avgpool(2), conv(4, 3, pad=1), tanh, avgpool(2), flatten, dense(3)",
                    {1, 8, 8}, 32, 3, {conv(1, 8, 4, 3, 1), conv(4, 4, 4, 3, 1)}, 4 * 2 * 2};

struct Fixture : bench::Evaluation {
  explicit Fixture(const Network& net, Rng r = Rng(2, rng_stream::test)) : Evaluation(model(net), data(net, r), r) {}

  static Model model(const Network& net) {
    ModelConfig config;
    config.architecture = net.architecture;
    return make_model(config, net.input);
  }
  static Dataset data(const Network& net, Rng& r) {
    Dataset d;
    d.sample_shape = net.input;
    d.x.resize(net.input.size(), net.samples);
    for (Index i = 0; i < d.x.size(); ++i) d.x.data()[i] = r.normal();
    for (Index s = 0; s < net.samples; ++s) d.labels.push_back(static_cast<std::int64_t>(r.below(net.classes)));
    return d;
  }
};

template <class F>
void measure(benchmark::State& state, const Network& net, F&& evaluate) {
  bench::measure<Fixture>(state, net, std::forward<F>(evaluate));
}
void gradient(benchmark::State& state, const Network* net) { bench::gradient<Fixture>(state, *net); }
void hvp(benchmark::State& state, const Network* net) { bench::hvp<Fixture>(state, *net); }
void third_order(benchmark::State& state, const Network* net) { bench::third_order<Fixture>(state, *net); }

// One gradient's products on plain matrices of the same shapes: per conv layer and chunk of samples,
// patches·Wᵀ (forward), then δᵀ·patches (∂/∂W) and δ·W (∂/∂patches, but for the first layer), or where
// the output has the input's size (adjoint_is_conv) and an input delta is wanted the adjoint conv's
// patches of δ times the stacked inputs (∂/∂W, flipped) and times its flipped kernel (the input delta);
// then the dense layer's three.
void gemms_of_gradient(benchmark::State& state, const Network* net) {
  use_one_blas_thread();
  struct Conv {
    Matrix patches, wt, stacked, grad, patch_delta;
    Index chunks, last;
    Matrix delta_patches, flipped, inputs, flipped_grad;  // the adjoint conv's
  };
  std::vector<Conv> convs;
  for (const ConvGeometry& g : net->convs) {
    const Index chunk = std::min(net->samples, conv_chunk_samples(g));
    convs.push_back({Matrix::Random(chunk * g.pixels(), g.patch()), Matrix::Random(g.patch(), g.out),
                     Matrix::Random(chunk * g.pixels(), g.out), Matrix(g.out, g.patch()),
                     Matrix(chunk * g.pixels(), g.patch()), (net->samples + chunk - 1) / chunk,
                     net->samples - (net->samples - 1) / chunk * chunk, Matrix(), Matrix(), Matrix(), Matrix()});
    if (adjoint_is_conv(g)) {
      const ConvGeometry a = adjoint_geometry(g);
      convs.back().delta_patches = Matrix::Random(chunk * g.pixels(), a.patch());
      convs.back().flipped = Matrix::Random(a.patch(), g.c);
      convs.back().patch_delta.resize(chunk * g.pixels(), g.c);
      convs.back().inputs = Matrix::Random(chunk * g.pixels(), g.c);
      convs.back().flipped_grad.resize(g.c, a.patch());
    }
  }
  const Matrix a = Matrix::Random(net->dense_in, net->samples), wt = Matrix::Random(net->dense_in, net->classes),
               d = Matrix::Random(net->classes, net->samples);
  Matrix z(net->classes, net->samples), g(net->dense_in, net->classes), e(net->dense_in, net->samples);
  measure(state, *net, [&] {
    for (std::size_t l = 0; l < convs.size(); ++l) {
      Conv& c = convs[l];
      for (Index k = 0; k < c.chunks; ++k) {
        const Index used = k + 1 == c.chunks ? c.last * net->convs[l].pixels() : c.patches.rows();
        gemm(1.0, c.patches.topRows(used), Op::none, c.wt, Op::none, 0.0, c.stacked.topRows(used));
        if (l > 0 && c.flipped.size() > 0) {
          gemm(1.0, c.inputs.topRows(used), Op::transpose, c.delta_patches.topRows(used), Op::none, 1.0, c.flipped_grad);
          gemm(1.0, c.delta_patches.topRows(used), Op::none, c.flipped, Op::none, 0.0, c.patch_delta.topRows(used));
          continue;
        }
        gemm(1.0, c.stacked.topRows(used), Op::transpose, c.patches.topRows(used), Op::none, 1.0, c.grad);
        if (l > 0) gemm(1.0, c.stacked.topRows(used), Op::none, c.wt, Op::transpose, 0.0, c.patch_delta.topRows(used));
      }
    }
    gemm(1.0, wt, Op::transpose, a, Op::none, 0.0, z);
    gemm(1.0, a, Op::none, d, Op::transpose, 0.0, g);
    gemm(1.0, wt, Op::none, d, Op::none, 0.0, e);
    benchmark::DoNotOptimize(z.data());
  });
}

}  // namespace

BENCHMARK_CAPTURE(gemms_of_gradient, example, &example)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(gradient, example, &example)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(hvp, example, &example)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(third_order, example, &example)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(gradient, vgg, &vgg)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(hvp, vgg, &vgg)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(third_order, vgg, &vgg)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(gemms_of_gradient, small, &small)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gradient, small, &small)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(hvp, small, &small)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(third_order, small, &small)->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
