// Strict safetensors reader and writer, plus TensorEntry helpers. See include/lowbit/io.h for the
// layout and lowbit's __metadata__ keys.
// Not here: what the tensors mean (layers, quantization); that is the caller's business.
//
// The parser treats its input as hostile: every size read from the file is checked against the
// bytes actually present before it is used, so a bad file costs at most O(file size) memory and
// ends in an Error naming the file and the fault. ref: the safetensors spec ("no holes", header
// starts with '{', padded with spaces, 100 MB header limit as in the reference implementation).
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "lowbit/io.h"

namespace lowbit {

static_assert(std::endian::native == std::endian::little,
              "lowbit stores tensors as raw little-endian bytes; a big-endian host needs byte swaps");

namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kFormatVersion = "1";
// Deepest legal header nesting: root object > tensor object > shape array.
constexpr int kMaxHeaderDepth = 3;
// lowbit's own metadata is arbitrary JSON; bound its nesting so that recursive consumers
// (dump, operator==) cannot be driven into a stack overflow by a crafted file.
constexpr int kMaxMetaDepth = 64;

uint32_t crc32_of(uint32_t crc, const uint8_t* p, size_t n) {
  // zlib's crc32 takes a uInt length: feed it in chunks.
  while (n > 0) {
    uInt chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    crc = static_cast<uint32_t>(::crc32(crc, p, chunk));
    p += chunk;
    n -= chunk;
  }
  return crc;
}

std::string crc_hex(uint32_t crc) {
  static const char* digits = "0123456789abcdef";
  std::string s(8, '0');
  for (int i = 7; i >= 0; --i, crc >>= 4) s[static_cast<size_t>(i)] = digits[crc & 15u];
  return s;
}

bool parse_crc_hex(const std::string& s, uint32_t* out) {
  if (s.size() != 8) return false;
  uint32_t v = 0;
  for (char c : s) {
    uint32_t d;
    if (c >= '0' && c <= '9') d = static_cast<uint32_t>(c - '0');
    else if (c >= 'a' && c <= 'f') d = static_cast<uint32_t>(c - 'a' + 10);
    else return false;
    v = v << 4 | d;
  }
  *out = v;
  return true;
}

std::string quoted(const std::string& s) {
  // For messages: JSON-escaped, so control bytes in a hostile name cannot garble the terminal.
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

// JSON parse with a depth bound and, for objects, duplicate-key detection (nlohmann silently
// keeps the last duplicate). top_keys receives the root object's keys in file order.
struct CheckedParse {
  nlohmann::json value;
  std::string error;  // empty when fine
};

CheckedParse checked_parse(const char* begin, const char* end, int max_depth,
                           std::vector<std::string>* top_keys) {
  CheckedParse out;
  std::vector<std::set<std::string>> seen;  // one key set per open object
  int depth = 0;
  auto cb = [&](int, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    switch (ev) {
      case E::object_start:
        seen.emplace_back();
        [[fallthrough]];
      case E::array_start:
        if (++depth > max_depth && out.error.empty())
          out.error = "JSON nested deeper than " + std::to_string(max_depth) + " levels";
        break;
      case E::object_end:
        if (!seen.empty()) seen.pop_back();
        [[fallthrough]];
      case E::array_end:
        --depth;
        break;
      case E::key: {
        if (seen.empty() || !parsed.is_string()) break;
        const std::string& k = parsed.get_ref<const std::string&>();
        if (!seen.back().insert(k).second && out.error.empty())
          out.error = "duplicate key " + quoted(k);
        if (top_keys && seen.size() == 1) top_keys->push_back(k);
        break;
      }
      case E::value:
        break;
    }
    return true;
  };
  try {
    out.value = nlohmann::json::parse(begin, end, cb, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const nlohmann::json::exception& e) {
    out.error = std::string("invalid JSON: ") + e.what();
  }
  return out;
}

// A non-negative JSON integer that fits int64, or -1.
int64_t json_nonneg_int(const nlohmann::json& v) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    return u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? static_cast<int64_t>(u) : -1;
  }
  if (v.is_number_integer()) {
    int64_t s = v.get<int64_t>();
    return s >= 0 ? s : -1;
  }
  return -1;
}

struct Parsed {
  TensorEntry entry;
  uint64_t begin = 0, end = 0;
  size_t order = 0;  // position in the header, to break ties between empty tensors
};

}  // namespace

size_t dtype_size(const std::string& dtype) {
  if (dtype == "F32" || dtype == "I32") return 4;
  if (dtype == "I8" || dtype == "U8") return 1;
  throw Error("unsupported dtype " + quoted(dtype) + " (lowbit handles F32, I8, U8, I32)");
}

int64_t shape_numel64(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw Error("shape " + shape_text(shape) + " has a negative dimension");
    if (__builtin_mul_overflow(n, d, &n)) throw Error("shape " + shape_text(shape) + " overflows int64");
  }
  return n;
}

const TensorEntry* SafetensorsFile::find(const std::string& name) const {
  for (const TensorEntry& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const TensorEntry& SafetensorsFile::get(const std::string& name) const {
  if (const TensorEntry* t = find(name)) return *t;
  throw Error((source.empty() ? std::string("safetensors file") : source) + ": no tensor named " + quoted(name));
}

// ---- writer ----

std::string serialize_safetensors(const SafetensorsFile& f) {
  std::set<std::string> names;
  uint64_t data_len = 0;
  uint32_t crc = crc32_of(0, nullptr, 0);
  for (const TensorEntry& t : f.tensors) {
    const std::string who = "tensor " + quoted(t.name);
    if (t.name.empty()) throw Error("safetensors writer: a tensor has an empty name");
    if (t.name == "__metadata__") throw Error("safetensors writer: \"__metadata__\" is reserved, not a tensor name");
    if (!names.insert(t.name).second) throw Error("safetensors writer: duplicate " + who);
    size_t esize;
    int64_t numel;
    try {
      esize = dtype_size(t.dtype);
      numel = shape_numel64(t.shape);
    } catch (const Error& e) {
      throw Error("safetensors writer: " + who + ": " + e.what());
    }
    uint64_t want;
    if (__builtin_mul_overflow(static_cast<uint64_t>(numel), static_cast<uint64_t>(esize), &want) ||
        want != t.bytes.size())
      throw Error("safetensors writer: " + who + ": shape " + shape_text(t.shape) + " of " + t.dtype + " needs " +
                  std::to_string(numel) + " x " + std::to_string(esize) + " bytes, has " +
                  std::to_string(t.bytes.size()));
    data_len += t.bytes.size();
    crc = crc32_of(crc, t.bytes.data(), t.bytes.size());
  }

  // Header built by hand in the caller's order (nlohmann objects sort keys; ordered_json inserts
  // in quadratic time). Strings go through nlohmann for escaping and UTF-8 checking.
  std::string header;
  try {
    nlohmann::json md = nlohmann::json::object();
    md["format_version"] = kFormatVersion;
    md["lowbit"] = f.meta.dump();
    md["crc32"] = crc_hex(crc);
    header = "{\"__metadata__\":" + md.dump();
    uint64_t off = 0;
    for (const TensorEntry& t : f.tensors) {
      nlohmann::json info = nlohmann::json::object();
      info["dtype"] = t.dtype;
      info["shape"] = t.shape;
      info["data_offsets"] = {off, off + t.bytes.size()};
      off += t.bytes.size();
      header += "," + nlohmann::json(t.name).dump() + ":" + info.dump();
    }
    header += "}";
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("safetensors writer: cannot encode header (names and metadata strings must be UTF-8): ") +
                e.what());
  }
  // Pad with spaces so the data section starts on an 8-byte boundary.
  header.append((8 - (8 + header.size()) % 8) % 8, ' ');

  std::string out;
  out.reserve(8 + header.size() + data_len);
  uint64_t hlen = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((hlen >> (8 * i)) & 0xffu));
  out += header;
  for (const TensorEntry& t : f.tensors) out.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
  return out;
}

void write_safetensors(const std::string& path, const SafetensorsFile& f) {
  std::string bytes;
  try {
    bytes = serialize_safetensors(f);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  write_file_atomic(path, bytes);
}

// ---- reader ----

SafetensorsFile parse_safetensors(const uint8_t* data, size_t n, const std::string& name) {
  auto fail = [&](const std::string& what) -> Error { return Error(name + ": " + what); };

  if (n < 8)
    throw fail("file is " + std::to_string(n) + " bytes, shorter than the 8-byte header length");
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= static_cast<uint64_t>(data[i]) << (8 * i);
  if (hlen > kMaxHeaderBytes)
    throw fail("header length " + std::to_string(hlen) + " exceeds the " + std::to_string(kMaxHeaderBytes) +
               "-byte limit (corrupt or not a safetensors file)");
  if (hlen > n - 8)
    throw fail("header length " + std::to_string(hlen) + " runs past the end of the file (" + std::to_string(n) +
               " bytes)");
  if (hlen == 0 || data[8] != '{') throw fail("header does not start with '{'");

  const char* hbegin = reinterpret_cast<const char*>(data + 8);
  std::vector<std::string> keys;
  CheckedParse hp = checked_parse(hbegin, hbegin + hlen, kMaxHeaderDepth, &keys);
  if (!hp.error.empty()) throw fail("header: " + hp.error);
  if (!hp.value.is_object()) throw fail("header is not a JSON object");

  const uint8_t* section = data + 8 + hlen;
  const uint64_t data_len = n - 8 - hlen;

  SafetensorsFile out;
  out.source = name;
  std::vector<Parsed> parsed;
  bool have_meta = false;
  std::string meta_text;
  uint32_t want_crc = 0;

  for (size_t order = 0; order < keys.size(); ++order) {
    const std::string& key = keys[order];
    const nlohmann::json& v = hp.value.at(key);

    if (key == "__metadata__") {
      have_meta = true;
      if (!v.is_object()) throw fail("__metadata__ is not an object");
      for (const auto& kv : v.items())
        if (!kv.value().is_string())
          throw fail("__metadata__." + quoted(kv.key()) + " is not a string (safetensors metadata values are strings)");
      auto get_str = [&](const char* k) -> const std::string& {
        auto it = v.find(k);
        if (it == v.end()) throw fail(std::string("__metadata__ has no \"") + k + "\" (not written by lowbit?)");
        return it->get_ref<const std::string&>();
      };
      const std::string& version = get_str("format_version");
      if (version != kFormatVersion)
        throw fail("__metadata__.format_version is " + quoted(version) + ", this build reads \"" + kFormatVersion +
                   "\"");
      if (!parse_crc_hex(get_str("crc32"), &want_crc))
        throw fail("__metadata__.crc32 is " + quoted(get_str("crc32")) + ", not 8 lowercase hex digits");
      meta_text = get_str("lowbit");
      continue;
    }

    const std::string who = "tensor " + quoted(key);
    if (key.empty()) throw fail("a tensor has an empty name");
    if (!v.is_object()) throw fail(who + ": entry is not an object");
    for (const auto& kv : v.items())
      if (kv.key() != "dtype" && kv.key() != "shape" && kv.key() != "data_offsets")
        throw fail(who + ": unknown field " + quoted(kv.key()));
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto of = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) throw fail(who + ": \"dtype\" missing or not a string");
    if (sh == v.end() || !sh->is_array()) throw fail(who + ": \"shape\" missing or not an array");
    if (of == v.end() || !of->is_array() || of->size() != 2)
      throw fail(who + ": \"data_offsets\" missing or not an array of 2 integers");

    Parsed p;
    p.order = order;
    p.entry.name = key;
    p.entry.dtype = dt->get<std::string>();
    size_t esize;
    try {
      esize = dtype_size(p.entry.dtype);
    } catch (const Error& e) {
      throw fail(who + ": " + e.what());
    }
    p.entry.shape.reserve(sh->size());
    for (const auto& d : *sh) {
      int64_t dim = json_nonneg_int(d);
      if (dim < 0) throw fail(who + ": shape entry " + d.dump() + " is not a non-negative integer");
      p.entry.shape.push_back(dim);
    }
    int64_t numel;
    try {
      numel = shape_numel64(p.entry.shape);
    } catch (const Error& e) {
      throw fail(who + ": " + e.what());
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(static_cast<uint64_t>(numel), static_cast<uint64_t>(esize), &nbytes))
      throw fail(who + ": shape " + shape_text(p.entry.shape) + " of " + p.entry.dtype + " overflows the byte size");
    int64_t b = json_nonneg_int((*of)[0]);
    int64_t e = json_nonneg_int((*of)[1]);
    if (b < 0 || e < 0) throw fail(who + ": data_offsets " + of->dump() + " are not non-negative integers");
    p.begin = static_cast<uint64_t>(b);
    p.end = static_cast<uint64_t>(e);
    if (p.begin > p.end) throw fail(who + ": data_offsets " + of->dump() + " have begin > end");
    if (p.end > data_len)
      throw fail(who + ": data_offsets " + of->dump() + " end past the data section (" + std::to_string(data_len) +
                 " bytes)");
    if (p.end - p.begin != nbytes)
      throw fail(who + ": data_offsets " + of->dump() + " span " + std::to_string(p.end - p.begin) +
                 " bytes, but shape " + shape_text(p.entry.shape) + " of " + p.entry.dtype + " needs " +
                 std::to_string(nbytes));
    parsed.push_back(std::move(p));
  }
  if (!have_meta) throw fail("no __metadata__ (not written by lowbit?)");

  // The tensors must tile the data section exactly: no overlap, no hole, nothing after the last.
  std::sort(parsed.begin(), parsed.end(), [](const Parsed& a, const Parsed& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.end != b.end) return a.end < b.end;
    return a.order < b.order;
  });
  uint64_t cursor = 0;
  const std::string* prev = nullptr;
  for (const Parsed& p : parsed) {
    const std::string who = "tensor " + quoted(p.entry.name);
    if (p.begin < cursor)
      throw fail(who + " [" + std::to_string(p.begin) + ", " + std::to_string(p.end) + ") overlaps tensor " +
                 quoted(*prev) + " ending at " + std::to_string(cursor));
    if (p.begin > cursor)
      throw fail("hole of " + std::to_string(p.begin - cursor) + " bytes in the data section before " + who +
                 " (safetensors forbids holes)");
    cursor = p.end;
    prev = &p.entry.name;
  }
  if (cursor != data_len)
    throw fail(std::to_string(data_len - cursor) + " trailing bytes after the last tensor (data section is " +
               std::to_string(data_len) + " bytes, tensors cover " + std::to_string(cursor) + ")");

  // All ranges are now known to lie inside the file and not to overlap: copying them allocates at
  // most data_len bytes in total.
  out.tensors.reserve(parsed.size());
  for (Parsed& p : parsed) {
    p.entry.bytes.assign(section + p.begin, section + p.end);
    out.tensors.push_back(std::move(p.entry));
  }

  CheckedParse mp = checked_parse(meta_text.data(), meta_text.data() + meta_text.size(), kMaxMetaDepth, nullptr);
  if (!mp.error.empty()) throw fail("__metadata__.lowbit: " + mp.error);
  out.meta = std::move(mp.value);

  // Last, so that a fuzzer exercises everything above even though it rarely forges a checksum.
  uint32_t got_crc = crc32_of(crc32_of(0, nullptr, 0), section, data_len);
  if (got_crc != want_crc)
    throw fail("checksum mismatch: data section crc32 is " + crc_hex(got_crc) + ", header says " + crc_hex(want_crc) +
               " (file corrupted)");
  return out;
}

SafetensorsFile read_safetensors(const std::string& path) {
  std::string bytes = read_file(path);
  return parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
}

// ---- TensorEntry helpers ----

static TensorEntry make_entry(const std::string& name, const std::vector<int64_t>& shape, const char* dtype,
                              const void* data, size_t esize, size_t n) {
  int64_t numel = shape_numel64(shape);
  if (static_cast<uint64_t>(numel) != n)
    throw Error("tensor " + quoted(name) + ": shape " + shape_text(shape) + " has " + std::to_string(numel) +
                " elements, given " + std::to_string(n));
  TensorEntry e;
  e.name = name;
  e.dtype = dtype;
  e.shape = shape;
  e.bytes.resize(n * esize);
  if (n) std::memcpy(e.bytes.data(), data, n * esize);
  return e;
}

TensorEntry tensor_f32(const std::string& name, const std::vector<int64_t>& shape, const float* data, size_t n) {
  return make_entry(name, shape, "F32", data, sizeof(float), n);
}
TensorEntry tensor_i8(const std::string& name, const std::vector<int64_t>& shape, const int8_t* data, size_t n) {
  return make_entry(name, shape, "I8", data, 1, n);
}
TensorEntry tensor_u8(const std::string& name, const std::vector<int64_t>& shape, const uint8_t* data, size_t n) {
  return make_entry(name, shape, "U8", data, 1, n);
}
TensorEntry tensor_i32(const std::string& name, const std::vector<int64_t>& shape, const int32_t* data, size_t n) {
  return make_entry(name, shape, "I32", data, sizeof(int32_t), n);
}
TensorEntry tensor_from(const std::string& name, const Tensor& t) {
  std::vector<int64_t> shape(t.shape().begin(), t.shape().end());
  return make_entry(name, shape, "F32", t.data(), sizeof(float), static_cast<size_t>(t.numel()));
}

// Element count of an entry whose dtype must be `dtype`, with its bytes consistent.
static size_t checked_count(const TensorEntry& e, const char* dtype, size_t esize) {
  if (e.dtype != dtype)
    throw Error("tensor " + quoted(e.name) + ": dtype is " + quoted(e.dtype) + ", expected \"" + dtype + "\"");
  int64_t numel = shape_numel64(e.shape);
  uint64_t want;
  if (__builtin_mul_overflow(static_cast<uint64_t>(numel), static_cast<uint64_t>(esize), &want) ||
      e.bytes.size() != want)
    throw Error("tensor " + quoted(e.name) + ": holds " + std::to_string(e.bytes.size()) + " bytes, shape " +
                shape_text(e.shape) + " of " + dtype + " needs " + std::to_string(numel) + " x " +
                std::to_string(esize));
  return static_cast<size_t>(numel);
}

static void copy_out(const TensorEntry& e, const char* dtype, size_t esize, void* out, size_t n) {
  size_t have = checked_count(e, dtype, esize);
  if (have != n)
    throw Error("tensor " + quoted(e.name) + ": has " + std::to_string(have) + " elements (shape " +
                shape_text(e.shape) + "), expected " + std::to_string(n));
  if (n) std::memcpy(out, e.bytes.data(), n * esize);
}

void copy_f32(const TensorEntry& e, float* out, size_t n) { copy_out(e, "F32", sizeof(float), out, n); }
void copy_i8(const TensorEntry& e, int8_t* out, size_t n) { copy_out(e, "I8", 1, out, n); }
void copy_u8(const TensorEntry& e, uint8_t* out, size_t n) { copy_out(e, "U8", 1, out, n); }
void copy_i32(const TensorEntry& e, int32_t* out, size_t n) { copy_out(e, "I32", sizeof(int32_t), out, n); }

std::vector<float> to_f32(const TensorEntry& e) {
  std::vector<float> v(checked_count(e, "F32", sizeof(float)));
  copy_f32(e, v.data(), v.size());
  return v;
}
std::vector<int8_t> to_i8(const TensorEntry& e) {
  std::vector<int8_t> v(checked_count(e, "I8", 1));
  copy_i8(e, v.data(), v.size());
  return v;
}
std::vector<uint8_t> to_u8(const TensorEntry& e) {
  std::vector<uint8_t> v(checked_count(e, "U8", 1));
  copy_u8(e, v.data(), v.size());
  return v;
}
std::vector<int32_t> to_i32(const TensorEntry& e) {
  std::vector<int32_t> v(checked_count(e, "I32", sizeof(int32_t)));
  copy_i32(e, v.data(), v.size());
  return v;
}

Tensor to_tensor(const TensorEntry& e) {
  size_t n = checked_count(e, "F32", sizeof(float));
  Shape shape;
  for (int64_t d : e.shape) {
    if (d > std::numeric_limits<int>::max())
      throw Error("tensor " + quoted(e.name) + ": dimension " + std::to_string(d) + " does not fit an int");
    shape.push_back(static_cast<int>(d));
  }
  Tensor t(shape);
  if (n) std::memcpy(t.data(), e.bytes.data(), n * sizeof(float));
  return t;
}

}  // namespace lowbit
