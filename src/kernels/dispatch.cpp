// Chooses the instruction set once (cpuid, or LOWBIT_ISA) and hands out kernel tables.
#include "kernels/dispatch.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "kernels/qkernels.h"
#include "kernels/sgemm.h"

namespace lowbit {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::ref: return "ref";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "?";
}

bool cpu_supports(Isa isa) {
  switch (isa) {
    case Isa::ref: return true;
    case Isa::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

bool cpu_has_avx512vbmi() { return cpu_supports(Isa::avx512) && __builtin_cpu_supports("avx512vbmi"); }

Isa best_isa() {
  if (cpu_supports(Isa::avx512)) return Isa::avx512;
  if (cpu_supports(Isa::avx2)) return Isa::avx2;
  return Isa::ref;
}

static KernelTable make_table(Isa isa) {
  KernelTable t{};
  t.isa = isa;
  switch (isa) {
    case Isa::ref: t.sgemm = sgemm_ref, t.sgemm_rows = sgemm_rows_ref, t.sgemm_nt = sgemm_nt_ref; break;
    case Isa::avx2: t.sgemm = sgemm_6x16__avx2, t.sgemm_rows = sgemm_rows__avx2, t.sgemm_nt = sgemm_nt__avx2; break;
    case Isa::avx512: t.sgemm = sgemm_6x32__avx512, t.sgemm_rows = sgemm_rows__avx512, t.sgemm_nt = sgemm_nt__avx512; break;
  }
  t.bias_relu_maxpool_f32 = isa == Isa::avx512 ? bias_relu_maxpool_f32__avx512 : bias_relu_maxpool_f32_ref;
  t.col2im_f32 = isa == Isa::avx512 ? col2im_f32__avx512 : col2im_f32_ref;
  t.maxpool2x2_f32 = isa == Isa::avx512 ? maxpool2x2_f32__avx512 : maxpool2x2_f32_ref;
  t.relu_maxpool_backward_f32 = isa == Isa::avx512 ? relu_maxpool_backward_f32__avx512 : relu_maxpool_backward_f32_ref;
  t.bias_relu_maxpool_win_f32 = isa == Isa::avx512 ? bias_relu_maxpool_win_f32__avx512 : bias_relu_maxpool_win_f32_ref;
  t.relu_maxpool_backward_win_f32 =
      isa == Isa::avx512 ? relu_maxpool_backward_win_f32__avx512 : relu_maxpool_backward_win_f32_ref;
  if (isa == Isa::avx512) {
    t.conv_lanes_fwd = conv_lanes_fwd__avx512, t.conv_lanes_dw = conv_lanes_dw__avx512;
    t.conv_lanes_dx = conv_lanes_dx__avx512;
    t.to_lanes_f32 = to_lanes_f32__avx512, t.from_lanes_f32 = from_lanes_f32__avx512;
    t.relu_maxpool_lanes_win_f32 = relu_maxpool_lanes_win_f32__avx512;
    t.relu_maxpool_backward_lanes_win_f32 = relu_maxpool_backward_lanes_win_f32__avx512;
    t.conv5_dw_f32 = conv5_dw_f32__avx512;
    t.fake_quant_forward = fake_quant_forward__avx512;
    t.fake_quant_forward_minmax = fake_quant_forward_minmax__avx512;
    t.fake_quant_backward_clipped = fake_quant_backward_clipped__avx512;
    t.fake_quant_backward_lsq = fake_quant_backward_lsq__avx512;
  }
  // ---- int8 kernels (engine) ----
  t.qavgpool2x2_u8 = qavgpool2x2_u8_ref;
  t.qmaxpool2x2_requant_i32 = isa == Isa::avx512 ? qmaxpool2x2_requant_i32__avx512 : qmaxpool2x2_requant_i32_ref;
  switch (isa) {
    case Isa::ref:
      t.qpack_u8 = qpack_u8_ref;
      t.qquantize_f32_u8 = qquantize_f32_u8_ref;
      t.qgemm_u8s8 = qgemm_u8s8_ref;
      t.qim2col_u8 = qim2col_u8_ref;
      t.qmaxpool2x2_u8 = qmaxpool2x2_u8_ref;
      break;
    case Isa::avx2:
      t.qgemm_u8s8 = qgemm_u8s8_2x16__avx2;
      t.qim2col_u8 = qim2col_u8__avx2;
      t.qmaxpool2x2_u8 = qmaxpool2x2_u8__avx2;
      t.qquantize_f32_u8 = qquantize_f32_u8__avx2;
      t.qpack_u8 = qpack_u8__avx2;
      break;
    case Isa::avx512:
      t.qgemm_u8s8 = qgemm_u8s8_6x64__avx512vnni;
      t.qim2col_u8 = cpu_has_avx512vbmi() ? qim2col_u8__avx512vbmi : qim2col_u8__avx2;
      t.qconv_maxpool_u8 = cpu_has_avx512vbmi() ? qconv_maxpool_u8__avx512vbmi : nullptr;
      t.qconv_i32 = cpu_has_avx512vbmi() ? qconv_i32__avx512vbmi : nullptr;
      t.qmaxpool2x2_u8 = qmaxpool2x2_u8__avx2;
      t.qquantize_f32_u8 = qquantize_f32_u8__avx2;
      t.qpack_u8 = qpack_u8__avx2;
      break;
  }
  // ---- end of int8 kernels ----
  return t;
}

const KernelTable* kernels_for(Isa isa) {
  static const KernelTable tables[3] = {make_table(Isa::ref), make_table(Isa::avx2),
                                        make_table(Isa::avx512)};
  return cpu_supports(isa) ? &tables[static_cast<int>(isa)] : nullptr;
}

static Isa choose_isa() {
  const char* env = std::getenv("LOWBIT_ISA");
  if (!env || !*env) return best_isa();
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512}) {
    if (std::strcmp(env, isa_name(isa)) != 0) continue;
    if (cpu_supports(isa)) return isa;
    std::fprintf(stderr, "lowbit: warning: LOWBIT_ISA=%s is not supported by this CPU; using %s\n",
                 env, isa_name(best_isa()));
    return best_isa();
  }
  std::fprintf(stderr, "lowbit: warning: LOWBIT_ISA=%s is unknown (ref, avx2, avx512); using %s\n",
               env, isa_name(best_isa()));
  return best_isa();
}

const KernelTable& kernels() {
  static const KernelTable* table = kernels_for(choose_isa());
  return *table;
}

}  // namespace lowbit
