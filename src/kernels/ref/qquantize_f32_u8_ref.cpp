// Scalar input quantization, float -> u8 activations (contract in kernels/qkernels.h). Scalar is
// enough: it touches each input pixel once, far less work than conv1.
#include <cmath>

#include "kernels/qkernels.h"

namespace lowbit {

void qquantize_f32_u8_ref(const float* x, int64_t n, const QQuantizeArgs& p, uint8_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    float r = std::isnan(x[i]) ? 0.0f : round_half_even(x[i] / p.scale);
    r += static_cast<float>(p.z_u);  // exact below 2^24; anything larger is clamped anyway
    if (!(r >= static_cast<float>(p.lo_u))) r = static_cast<float>(p.lo_u);
    if (r > static_cast<float>(p.hi_u)) r = static_cast<float>(p.hi_u);
    out[i] = static_cast<uint8_t>(r);
  }
}

}  // namespace lowbit
