// libFuzzer target for the model readers above the safetensors layer: the FP32 reader
// (model_from_safetensors: layer specs from the metadata JSON, tensor shapes and values) and the
// quantized reader (qmodel_from_safetensors: bit widths, zero points, multipliers, shifts, shape
// chain). Whatever either accepts must also run: the FP32 model and the integer engine take one
// input image (when it is small) without crashing, and give finite outputs.
// Properties: no crash, no sanitizer report, nothing thrown but lowbit::Error. The checksums are
// not verified here (a mutation would almost never carry a matching one, and the model readers
// behind them would go untested); fuzz_safetensors covers them.
// Seeds: fuzz/corpus/model/ (small FP32 and quantized files written by the library).
//
// FUZZ_SOURCES: src/core/*.cpp src/io/*.cpp src/nn/*.cpp src/engine/engine.cpp src/engine/qmodel_file.cpp src/quant/*.cpp src/kernels/*.cpp src/kernels/ref/*.cpp src/kernels/avx2/*.cpp src/kernels/avx512/*.cpp
// FUZZ_LIBS: -lz -lfmt -fopenmp
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "lowbit/engine.h"
#include "lowbit/io.h"
#include "lowbit/nn.h"

static void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_model: property violated: %s\n", what);
    std::abort();
  }
}

// Runs only small networks: an accepted file may describe a large input (up to 4096^3) and the
// fuzzer's memory limit is not what is being tested.
static bool small(const lowbit::Shape& s) { return lowbit::shape_numel(s) <= 4096; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lowbit::set_threads(1);
  lowbit::SafetensorsFile f;
  try {
    f = lowbit::parse_safetensors(data, size, "fuzz-input", /*verify_checksums=*/false);
  } catch (const lowbit::Error&) {
    return 0;
  }
  try {
    lowbit::Sequential m = lowbit::model_from_safetensors(f);
    if (small(m.input_shape)) {
      lowbit::Shape in = m.input_shape;
      in.insert(in.begin(), 1);
      lowbit::Shape out = m.output_shape(in);
      if (lowbit::shape_numel(out) <= (1 << 20)) {
        lowbit::Tensor x(in);
        for (int64_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(i % 7) * 0.25f - 0.75f;
        m.forward(x);
      }
    }
  } catch (const lowbit::Error&) {
  }
  try {
    lowbit::QModel q = lowbit::qmodel_from_safetensors(f);
    lowbit::Engine e(q);
    if (small(q.input_shape)) {
      lowbit::Shape in = q.input_shape;
      in.insert(in.begin(), 1);
      lowbit::Tensor x(in), logits;
      for (int64_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(i % 7) * 0.25f - 0.75f;
      e.run(x, logits);
      for (int64_t i = 0; i < logits.numel(); ++i) check(std::isfinite(logits[i]), "engine logits finite");
    }
  } catch (const lowbit::Error&) {
  }
  return 0;
}
