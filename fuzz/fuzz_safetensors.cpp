// libFuzzer target for the safetensors parser (src/io/safetensors.cpp).
// Not a test of file I/O: it feeds bytes straight to parse_safetensors.
// Properties checked: the parser never crashes, reads out of bounds or throws anything but
// lowbit::Error; whatever it accepts serializes and parses back to the same tensors and metadata;
// the typed accessors agree with the dtype.
//
// FUZZ_SOURCES: src/io/safetensors.cpp src/io/file.cpp src/core/core.cpp
// FUZZ_LIBS: -lz -fopenmp
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "lowbit/io.h"

static void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_safetensors: property violated: %s\n", what);
    std::abort();
  }
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lowbit::SafetensorsFile f;
  try {
    f = lowbit::parse_safetensors(data, size, "fuzz-input");
  } catch (const lowbit::Error&) {
    return 0;  // rejected with a message: fine
  }
  // Accepted: the round trip must succeed and be lossless.
  std::string again = lowbit::serialize_safetensors(f);
  lowbit::SafetensorsFile g =
      lowbit::parse_safetensors(reinterpret_cast<const uint8_t*>(again.data()), again.size(), "round-trip");
  check(g.meta == f.meta, "metadata differs after round trip");
  check(g.tensors.size() == f.tensors.size(), "tensor count differs after round trip");
  for (size_t i = 0; i < f.tensors.size(); ++i) {
    const lowbit::TensorEntry& a = f.tensors[i];
    const lowbit::TensorEntry& b = g.tensors[i];
    check(a.name == b.name && a.dtype == b.dtype && a.shape == b.shape && a.bytes == b.bytes,
          "tensor differs after round trip");
    check(f.find(a.name) != nullptr, "find() misses a parsed tensor");
    size_t n = 0;
    if (a.dtype == "F32") n = lowbit::to_f32(a).size();
    else if (a.dtype == "I8") n = lowbit::to_i8(a).size();
    else if (a.dtype == "U8") n = lowbit::to_u8(a).size();
    else if (a.dtype == "I32") n = lowbit::to_i32(a).size();
    else check(false, "parser accepted an unsupported dtype");
    check(n * lowbit::dtype_size(a.dtype) == a.bytes.size(), "element count disagrees with byte size");
    if (a.dtype == "F32") {
      try {
        lowbit::Tensor t = lowbit::to_tensor(a);
        check(static_cast<size_t>(t.numel()) == n, "to_tensor element count");
      } catch (const lowbit::Error&) {
        // a dim above INT_MAX (only possible with a zero elsewhere in the shape): refused, fine
      }
    }
  }
  return 0;
}
