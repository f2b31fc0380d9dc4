// Elementwise activations and their derivatives up to third order, applied to whole matrices.
#pragma once
#include "core/config.hpp"
#include "core/types.hpp"
#include "model/buffer.hpp"

namespace eomlab {

// tanh of every entry, vectorized (Eigen's tanh for double is scalar), with one division: z + z·s·P(s)/Q(s),
// s = z², for |z| <= 0.625 (the rational approximation of Cephes' tanh), and ±(1 - 2/(e^{2|z|} + 1)) beyond,
// e^{2|z|} being Cephes' Padé exp folded into the same fraction (activation.cpp). Within 2 ulp of
// std::tanh; an entry's bits do not depend on where it lies in z (tests/unit/test_activation.cpp).
void tanh_into(const Matrix& z, Matrix& out);

// Fills out[0] = σ(z), out[j] = σ^(j)(z) for j = 1..order (order <= 3; silu, relu: <= 4; Error beyond).
// out must hold order+1 matrices (Matrix* or Buffer* to an array, or BufferRefs); each is resized to z's
// shape.
template <class Out>
void apply_activation(Activation a, const Eigen::Ref<const Matrix>& z, int order, Out out);

// tanh's first-order jet in one pass: t = tanh(z), slope = tanh'(z), and their directional derivatives
// dt = tanh'(z)·dz, dslope = tanh''(z)·dz, with the bits of apply_activation (order 2) followed by
// jet_apply_in_place (model/jet.hpp) on each. Each output is resized to z's shape.
void tanh_first_order_jet(const Eigen::Ref<const Matrix>& z, const Eigen::Ref<const Matrix>& dz, Buffer& t, Buffer& slope,
                          Buffer& dt, Buffer& dslope);

namespace detail {
// The same approximation one entry at a time, with the same operations: the code of builds without AVX2
// and FMA (its last bits may differ from the vector code's where the compiler fuses differently).
double tanh_portable(double x);
}  // namespace detail

// Buffers that need not lie in one array (e.g. components of different jets), indexed like one.
struct BufferRefs {
  Buffer* p[5];
  Buffer& operator[](int j) const { return *p[j]; }
};

}  // namespace eomlab
