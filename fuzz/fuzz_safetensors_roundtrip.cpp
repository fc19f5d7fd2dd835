// libFuzzer target for the safetensors writer + reader together (src/io/safetensors.cpp).
// Not a parser fuzzer (that is fuzz_safetensors.cpp, which rarely forges both checksums and so
// rarely reaches the accept path): here the input is decoded into a SafetensorsFile (metadata,
// names, dtypes, shapes, bytes), and whatever the writer accepts must be read back identically.
//
// FUZZ_SOURCES: src/io/safetensors.cpp src/io/file.cpp src/core/core.cpp
// FUZZ_LIBS: -lz -fopenmp
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "lowbit/io.h"

static void check(bool ok, const char* what, const std::string& detail = "") {
  if (!ok) {
    std::fprintf(stderr, "fuzz_safetensors_roundtrip: property violated: %s %s\n", what, detail.c_str());
    std::abort();
  }
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  lowbit::SafetensorsFile f;
  std::string meta_text = in.ConsumeRandomLengthString(512);
  f.meta = nlohmann::json::parse(meta_text, nullptr, /*allow_exceptions=*/false);
  if (f.meta.is_discarded()) f.meta = meta_text;  // not JSON: store it as a string (may be bad UTF-8)
  static const char* kDtypes[] = {"F32", "I8", "U8", "I32", "F16", ""};
  int ntensors = in.ConsumeIntegralInRange(0, 8);
  for (int i = 0; i < ntensors; ++i) {
    lowbit::TensorEntry t;
    t.name = in.ConsumeRandomLengthString(24);
    t.dtype = kDtypes[in.ConsumeIntegralInRange(0, 5)];
    int rank = in.ConsumeIntegralInRange(0, 4);
    int64_t numel = 1;
    for (int r = 0; r < rank; ++r) {
      int64_t d = in.ConsumeIntegralInRange<int64_t>(-1, 6);
      t.shape.push_back(d);
      numel *= d < 0 ? 1 : d;
    }
    size_t esize = t.dtype == "F32" || t.dtype == "I32" ? 4 : 1;
    size_t nbytes = static_cast<size_t>(numel) * esize;
    if (in.ConsumeBool()) nbytes += in.ConsumeIntegralInRange<size_t>(0, 3);  // sometimes inconsistent
    t.bytes = in.ConsumeBytes<uint8_t>(nbytes);
    t.bytes.resize(nbytes);
    f.tensors.push_back(std::move(t));
  }

  std::string bytes;
  try {
    bytes = lowbit::serialize_safetensors(f);
  } catch (const lowbit::Error&) {
    return 0;  // the writer refused (bad name, dtype, size, UTF-8, nesting): fine
  }
  lowbit::SafetensorsFile g;
  try {
    g = lowbit::parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "written");
  } catch (const lowbit::Error& e) {
    check(false, "reader rejects what the writer wrote:", e.what());
  }
  check(g.meta == f.meta, "metadata differs:", g.meta.dump() + " vs " + f.meta.dump());
  check(g.tensors.size() == f.tensors.size(), "tensor count differs");
  for (size_t i = 0; i < f.tensors.size(); ++i) {
    const lowbit::TensorEntry& a = f.tensors[i];
    const lowbit::TensorEntry& b = g.tensors[i];
    check(a.name == b.name && a.dtype == b.dtype && a.shape == b.shape && a.bytes == b.bytes,
          "tensor differs (or order changed) at", std::to_string(i));
  }
  // A single flipped byte of what was written must be rejected, or (a JSON escape spelled
  // differently, e.g. \u001f vs \u001F) decode to exactly the same content.
  if (!bytes.empty()) {
    size_t pos = in.ConsumeIntegralInRange<size_t>(0, bytes.size() - 1);
    uint8_t x = in.ConsumeIntegralInRange<uint8_t>(1, 255);
    bytes[pos] = static_cast<char>(static_cast<uint8_t>(bytes[pos]) ^ x);
    try {
      lowbit::SafetensorsFile h =
          lowbit::parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "flipped");
      bool same = h.meta == g.meta && h.tensors.size() == g.tensors.size();
      for (size_t i = 0; same && i < g.tensors.size(); ++i)
        same = h.tensors[i].name == g.tensors[i].name && h.tensors[i].dtype == g.tensors[i].dtype &&
               h.tensors[i].shape == g.tensors[i].shape && h.tensors[i].bytes == g.tensors[i].bytes;
      check(same, "a flipped byte changed the content and was accepted, offset",
            std::to_string(pos) + " xor " + std::to_string(x));
    } catch (const lowbit::Error&) {
    }
  }
  return 0;
}
