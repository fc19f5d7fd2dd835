// libFuzzer target for the IDX reader (src/data/idx.cpp): raw bytes go to parse_idx, and bytes that
// start with the gzip magic go through gunzip first, as read_idx does. Properties: no crash, no
// out-of-bounds read, nothing thrown but lowbit::Error; an accepted array's size matches its dims.
//
// FUZZ_SOURCES: src/data/idx.cpp src/core/core.cpp
// FUZZ_LIBS: -lz -fopenmp
#include <cstdint>
#include <cstdlib>

#include "lowbit/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    lowbit::IdxArray a;
    if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
      std::vector<uint8_t> raw = lowbit::gunzip(data, size, "fuzz-input", 1 << 24);
      a = lowbit::parse_idx(raw.data(), raw.size(), "fuzz-input");
    } else {
      a = lowbit::parse_idx(data, size, "fuzz-input");
    }
    size_t n = 1;
    for (int d : a.dims) n *= static_cast<size_t>(d);
    if (n != a.data.size()) std::abort();
    if (a.dims.size() == 3 && a.dims[0] > 0 && a.dims[1] == 28 && a.dims[2] == 28 && a.dims[0] < 64) {
      lowbit::IdxArray labels{{a.dims[0]}, std::vector<uint8_t>(a.data.begin(), a.data.begin() + a.dims[0])};
      lowbit::make_dataset(a, labels, "fuzz-input");
    }
  } catch (const lowbit::Error&) {
  }
  return 0;
}
