#include "model/activation.hpp"

#include <cmath>

namespace eomlab {

void tanh_into(const Matrix& z, Matrix& out) {
  const auto x = z.array();
  const auto s = x.square();
  const auto p = (-9.64399179425052238628E-1 * s - 9.92877231001918586564E1) * s - 1.61468768441708447952E3;
  const auto q = ((s + 1.12811678491632931402E2) * s + 2.23548839060100448583E3) * s + 4.84406305325125486048E3;
  const auto small = x + x * s * p / q;
  const auto big = (1.0 - 2.0 / ((2.0 * x.abs()).exp() + 1.0)) * x.sign();
  out.resize(z.rows(), z.cols());
  out.array() = (x.abs() > 0.625).select(big, small);
}

void apply_activation(Activation a, const Matrix& z, int order, Matrix* out) {
  for (int j = 0; j <= order; ++j) out[j].resize(z.rows(), z.cols());
  const auto zz = z.array();
  switch (a) {
    case Activation::tanh: {
      tanh_into(z, out[0]);
      const auto t = out[0].array();
      if (order >= 1) out[1].array() = 1.0 - t.square();
      if (order >= 2) out[2].array() = -2.0 * t * out[1].array();
      if (order >= 3) out[3].array() = out[1].array() * (6.0 * t.square() - 2.0);
      break;
    }
    case Activation::softplus: {
      out[0].array() = zz.max(0.0) + (-zz.abs()).exp().log1p();
      if (order >= 1) {
        const Eigen::ArrayXXd s = 1.0 / (1.0 + (-zz).exp());
        out[1].array() = s;
        if (order >= 2) out[2].array() = s * (1.0 - s);
        if (order >= 3) out[3].array() = s * (1.0 - s) * (1.0 - 2.0 * s);
      }
      break;
    }
    case Activation::gelu: {
      const Eigen::ArrayXXd cdf = 0.5 * (-zz * M_SQRT1_2).unaryExpr([](double x) { return std::erfc(x); });
      const Eigen::ArrayXXd pdf = (-0.5 * zz.square()).exp() * (0.5 * M_2_SQRTPI * M_SQRT1_2);
      out[0].array() = zz * cdf;
      if (order >= 1) out[1].array() = cdf + zz * pdf;
      if (order >= 2) out[2].array() = pdf * (2.0 - zz.square());
      if (order >= 3) out[3].array() = pdf * (zz.cube() - 4.0 * zz);
      break;
    }
    case Activation::relu: {
      out[0].array() = zz.max(0.0);
      if (order >= 1) out[1].array() = (zz > 0.0).cast<double>();
      for (int j = 2; j <= order; ++j) out[j].setZero();
      break;
    }
  }
}

}  // namespace eomlab
