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
#include <map>
#include <set>
#include <string>
#include <vector>

#include "lowbit/io.h"

namespace lowbit {

static_assert(std::endian::native == std::endian::little,
              "lowbit stores tensors as raw little-endian bytes; a big-endian host needs byte swaps");

namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // as the reference implementation
constexpr const char* kFormatVersion = "1";
// lowbit's own metadata is parsed into a DOM (about 10x its text in memory): bound its size, and
// its nesting so that recursive consumers (dump, operator==) cannot overflow the stack.
constexpr size_t kMaxMetaBytes = 16u << 20;
constexpr int kMaxMetaDepth = 64;
// __metadata__ entries other than lowbit's are allowed (other tools add some) but bounded.
constexpr size_t kMaxMetaEntries = 64;

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

std::string json_quoted(const std::string& s) {
  // For messages only: JSON-escaped, so control bytes in a hostile name cannot garble the
  // terminal, and cut at 80 bytes, so a hostile 100 MB name does not make a 100 MB message.
  const size_t kMax = 80;
  std::string q = nlohmann::json(s.size() > kMax ? s.substr(0, kMax) : s)
                      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return s.size() > kMax ? q + "..." : q;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
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
  throw Error("unsupported dtype " + json_quoted(dtype) + " (lowbit handles F32, I8, U8, I32)");
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
  throw Error((source.empty() ? std::string("safetensors file") : source) + ": no tensor named " + json_quoted(name));
}

// crc32 of what the header says beyond the data: lowbit's metadata text, then each tensor's name,
// dtype and dims in data order (offsets follow from order and sizes, which the reader checks).
// Netstring-style pieces ("<len>:<bytes>,") so that different tables cannot digest alike by
// shifting bytes between fields. Without it a flipped digit in a quantization scale in the header
// would go unnoticed: the data crc32 does not cover the header.
namespace {

uint32_t crc_piece(uint32_t crc, const std::string& s) {
  std::string len = std::to_string(s.size()) + ":";
  crc = crc32_of(crc, reinterpret_cast<const uint8_t*>(len.data()), len.size());
  crc = crc32_of(crc, reinterpret_cast<const uint8_t*>(s.data()), s.size());
  return crc32_of(crc, reinterpret_cast<const uint8_t*>(","), 1);
}

uint32_t header_digest(const std::string& meta_text, const std::vector<const TensorEntry*>& tensors) {
  uint32_t crc = crc_piece(crc32_of(0, nullptr, 0), meta_text);
  for (const TensorEntry* t : tensors) {
    std::string dims;
    for (size_t i = 0; i < t->shape.size(); ++i) {
      if (i) dims += ',';
      dims += std::to_string(t->shape[i]);
    }
    crc = crc_piece(crc_piece(crc_piece(crc, t->name), t->dtype), dims);
  }
  return crc;
}

// SAX pass over lowbit's metadata JSON that only bounds its nesting (the DOM is built after).
class DepthSax {
 public:
  std::string error;
  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(int64_t) { return true; }
  bool number_unsigned(uint64_t) { return true; }
  bool number_float(double, const std::string&) { return true; }
  bool string(std::string&) { return true; }
  bool binary(nlohmann::json::binary_t&) { return true; }
  bool key(std::string&) { return true; }
  bool start_object(std::size_t) { return enter(); }
  bool start_array(std::size_t) { return enter(); }
  bool end_object() { return --depth_, true; }
  bool end_array() { return --depth_, true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::json::exception& e) {
    error = std::string("invalid JSON: ") + e.what();
    return false;
  }

 private:
  bool enter() {
    if (++depth_ <= kMaxMetaDepth) return true;
    error = "JSON nested deeper than " + std::to_string(kMaxMetaDepth) + " levels";
    return false;
  }
  int depth_ = 0;
};

}  // namespace

// ---- writer ----

std::string serialize_safetensors(const SafetensorsFile& f) {
  std::set<std::string> names;
  uint64_t data_len = 0;
  uint32_t crc = crc32_of(0, nullptr, 0);
  std::vector<const TensorEntry*> order;
  for (const TensorEntry& t : f.tensors) {
    const std::string who = "tensor " + json_quoted(t.name);
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
    order.push_back(&t);
  }

  // Header built by hand in the caller's order (nlohmann objects sort keys; ordered_json inserts
  // in quadratic time). Strings go through nlohmann for escaping and UTF-8 checking.
  std::string header;
  try {
    const std::string meta_text = f.meta.dump();
    if (meta_text.size() > kMaxMetaBytes)
      throw Error("safetensors writer: metadata is " + std::to_string(meta_text.size()) + " bytes of JSON, above the " +
                  std::to_string(kMaxMetaBytes) + "-byte limit");
    DepthSax depth;  // refuse what the reader would refuse
    nlohmann::json::sax_parse(meta_text.begin(), meta_text.end(), &depth);
    if (!depth.error.empty()) throw Error("safetensors writer: metadata: " + depth.error);
    nlohmann::json md = nlohmann::json::object();
    md["format_version"] = kFormatVersion;
    md["lowbit"] = meta_text;
    md["crc32"] = crc_hex(crc);
    md["header_crc32"] = crc_hex(header_digest(meta_text, order));
    header = "{\"__metadata__\":" + md.dump();
    uint64_t off = 0;
    for (const TensorEntry& t : f.tensors) {
      nlohmann::json info = nlohmann::json::object();
      info["dtype"] = t.dtype;
      info["shape"] = t.shape;
      info["data_offsets"] = {off, off + t.bytes.size()};
      off += t.bytes.size();
      header += ',';
      header += nlohmann::json(t.name).dump();
      header += ':';
      header += info.dump();
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

namespace {

// Streaming (SAX) reader of the header JSON. It validates as it goes and stops at the first
// fault, so a hostile header costs time and memory linear in its size with a small constant:
// no DOM of the whole header is built (nlohmann's DOM costs ~20x the text, and its callback
// parser is quadratic in the number of keys). Memory kept: one Parsed per tensor entry, each
// entry being at least ~45 bytes of header text.
// Legal shape: {"__metadata__": {key: string, ...}, name: {"dtype": string, "shape": [uint, ...],
// "data_offsets": [uint, uint]}, ...}; anything else is reported with the tensor's name.
class HeaderSax {
 public:
  explicit HeaderSax(uint64_t data_len) : data_len_(data_len) {}

  std::string error;             // first fault; empty when the header is fine
  std::vector<Parsed> tensors;   // in header order
  bool have_meta = false;
  std::map<std::string, std::string> meta;

  // nlohmann::json SAX interface.
  bool null() { return scalar(nullptr, -1, "null"); }
  bool boolean(bool b) { return scalar(nullptr, -1, b ? "true" : "false"); }
  bool number_integer(int64_t v) { return scalar(nullptr, v >= 0 ? v : -1, std::to_string(v)); }
  bool number_unsigned(uint64_t v) {
    bool fits = v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    return scalar(nullptr, fits ? static_cast<int64_t>(v) : -1, std::to_string(v));
  }
  bool number_float(double, const std::string& text) {
    return scalar(nullptr, -1, text.size() > 80 ? text.substr(0, 80) + "..." : text);
  }
  bool string(std::string& s) { return scalar(&s, -1, ""); }
  bool binary(nlohmann::json::binary_t&) { return fail("header holds binary data"); }
  bool start_object(std::size_t) {
    switch (at_) {
      case At::Start:
        at_ = At::Root;
        return true;
      case At::Root:
        if (key_ == "__metadata__") {
          at_ = At::Meta;
          return true;
        }
        cur_ = Parsed{};
        cur_.entry.name = key_;
        cur_.order = tensors.size();
        fields_ = 0;
        at_ = At::Entry;
        return true;
      default:
        return scalar(nullptr, -1, "an object");
    }
  }
  bool start_array(std::size_t) {
    if (at_ == At::Entry && field_ == kShape) {
      at_ = At::Shape;
      return true;
    }
    if (at_ == At::Entry && field_ == kOffsets) {
      at_ = At::Offsets;
      noffsets_ = 0;
      return true;
    }
    return scalar(nullptr, -1, "an array");
  }
  bool key(std::string& k) {
    switch (at_) {
      case At::Root:
        if (k == "__metadata__") {
          if (have_meta) return fail("duplicate key \"__metadata__\"");
          have_meta = true;
        } else if (k.empty()) {
          return fail("a tensor has an empty name");
        }
        key_ = k;
        return true;
      case At::Meta:
        if (meta.count(k)) return fail("__metadata__: duplicate key " + json_quoted(k));
        if (meta.size() >= kMaxMetaEntries)
          return fail("__metadata__ has more than " + std::to_string(kMaxMetaEntries) + " entries");
        key_ = k;
        return true;
      case At::Entry: {
        unsigned bit = k == "dtype" ? kDtype : k == "shape" ? kShape : k == "data_offsets" ? kOffsets : 0u;
        if (!bit) return fail(who() + ": unknown field " + json_quoted(k));
        if (fields_ & bit) return fail(who() + ": duplicate key " + json_quoted(k));
        fields_ |= bit;
        field_ = bit;
        return true;
      }
      default:
        return fail("unexpected key " + json_quoted(k));
    }
  }
  bool end_object() {
    switch (at_) {
      case At::Root:
        at_ = At::End;
        return true;
      case At::Meta:
        at_ = At::Root;
        return true;
      case At::Entry:
        at_ = At::Root;
        return finish_entry();
      default:
        return fail("unexpected end of object");
    }
  }
  bool end_array() {
    if (at_ == At::Shape) {
      at_ = At::Entry;
      return true;
    }
    if (at_ == At::Offsets) {
      if (noffsets_ != 2)
        return fail(who() + ": \"data_offsets\" has " + std::to_string(noffsets_) + " entries, needs 2");
      at_ = At::Entry;
      return true;
    }
    return fail("unexpected end of array");
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::json::exception& e) {
    return fail(std::string("invalid JSON: ") + e.what());
  }

 private:
  enum class At { Start, Root, Meta, Entry, Shape, Offsets, End };
  static constexpr unsigned kDtype = 1, kShape = 2, kOffsets = 4;

  bool fail(const std::string& what) {
    if (error.empty()) error = what;
    return false;
  }
  std::string who() const { return "tensor " + json_quoted(cur_.entry.name); }

  // A value other than the containers accepted above. str: the string, for strings; nonneg: the
  // value when it is an integer in [0, INT64_MAX], else -1; text: the value, for messages
  // (strings are quoted lazily, only for a message).
  bool scalar(const std::string* str, int64_t nonneg, const std::string& shown) {
    auto text = [&]() { return str ? json_quoted(*str) : shown; };
    switch (at_) {
      case At::Root:
        if (key_ == "__metadata__") return fail("__metadata__ is not an object");
        return fail("tensor " + json_quoted(key_) + ": entry is not an object");
      case At::Meta:
        if (!str)
          return fail("__metadata__." + json_quoted(key_) + " is " + text() +
                      ", not a string (safetensors metadata values are strings)");
        meta.emplace(key_, *str);
        return true;
      case At::Entry:
        if (field_ == kDtype) {
          if (!str) return fail(who() + ": \"dtype\" is " + text() + ", not a string");
          cur_.entry.dtype = *str;
          return true;
        }
        if (field_ == kShape) return fail(who() + ": \"shape\" is " + text() + ", not an array");
        return fail(who() + ": \"data_offsets\" is " + text() + ", not an array of 2 integers");
      case At::Shape:
        if (nonneg < 0) return fail(who() + ": shape entry " + text() + " is not a non-negative integer");
        cur_.entry.shape.push_back(nonneg);
        return true;
      case At::Offsets:
        if (nonneg < 0) return fail(who() + ": data_offsets entry " + text() + " is not a non-negative integer");
        if (noffsets_ == 2) return fail(who() + ": \"data_offsets\" has more than 2 entries");
        offsets_[noffsets_++] = static_cast<uint64_t>(nonneg);
        return true;
      default:
        return fail("header is not a JSON object");
    }
  }

  bool finish_entry() {
    if (!(fields_ & kDtype)) return fail(who() + ": \"dtype\" missing");
    if (!(fields_ & kShape)) return fail(who() + ": \"shape\" missing");
    if (!(fields_ & kOffsets)) return fail(who() + ": \"data_offsets\" missing");
    size_t esize;
    int64_t numel;
    try {
      esize = dtype_size(cur_.entry.dtype);
      numel = shape_numel64(cur_.entry.shape);
    } catch (const Error& e) {
      return fail(who() + ": " + e.what());
    }
    // Message parts are built only on failure: this runs once per tensor of a large header.
    const std::string& dt = cur_.entry.dtype;
    auto shp = [&] { return shape_text(cur_.entry.shape); };
    uint64_t nbytes;
    if (__builtin_mul_overflow(static_cast<uint64_t>(numel), static_cast<uint64_t>(esize), &nbytes))
      return fail(who() + ": shape " + shp() + " of " + dt + " overflows the byte size");
    const uint64_t b = offsets_[0], e = offsets_[1];
    auto offs = [&] { return "data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "]"; };
    if (b > e) return fail(who() + ": " + offs() + " have begin > end");
    if (e > data_len_)
      return fail(who() + ": " + offs() + " end past the data section (" + std::to_string(data_len_) + " bytes)");
    if (e - b != nbytes)
      return fail(who() + ": " + offs() + " span " + std::to_string(e - b) + " bytes, but shape " + shp() + " of " +
                  dt + " needs " + std::to_string(nbytes));
    cur_.begin = b;
    cur_.end = e;
    tensors.push_back(std::move(cur_));
    return true;
  }

  uint64_t data_len_;
  At at_ = At::Start;
  std::string key_;       // last key read in the root object or in __metadata__
  Parsed cur_;            // the tensor entry being read
  unsigned fields_ = 0;   // fields seen in cur_ (kDtype | kShape | kOffsets)
  unsigned field_ = 0;    // field whose value comes next
  int noffsets_ = 0;
  uint64_t offsets_[2] = {0, 0};
};


}  // namespace

SafetensorsFile parse_safetensors(const uint8_t* data, size_t n, const std::string& name, bool verify_checksums) {
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
  // nlohmann's lexer takes a NUL byte for the end of input, which would let anything follow it.
  // A raw NUL is never valid JSON (inside strings it must be escaped), so refuse it outright.
  if (std::memchr(data + 8, 0, hlen)) throw fail("header contains a NUL byte");

  const char* hbegin = reinterpret_cast<const char*>(data + 8);
  const uint8_t* section = data + 8 + hlen;
  const uint64_t data_len = n - 8 - hlen;
  HeaderSax sax(data_len);
  bool ok = nlohmann::json::sax_parse(hbegin, hbegin + hlen, &sax, nlohmann::json::input_format_t::json,
                                      /*strict=*/true, /*ignore_comments=*/false);
  if (!ok || !sax.error.empty()) throw fail("header: " + (sax.error.empty() ? "invalid JSON" : sax.error));
  std::vector<Parsed>& parsed = sax.tensors;

  {  // duplicate tensor names (the SAX pass keeps no set of names, to stay lean)
    std::vector<const std::string*> names;
    names.reserve(parsed.size());
    for (const Parsed& p : parsed) names.push_back(&p.entry.name);
    std::sort(names.begin(), names.end(), [](const std::string* a, const std::string* b) { return *a < *b; });
    for (size_t i = 1; i < names.size(); ++i)
      if (*names[i] == *names[i - 1]) throw fail("header: duplicate tensor name " + json_quoted(*names[i]));
  }

  if (!sax.have_meta) throw fail("no __metadata__ (not written by lowbit?)");
  auto meta_str = [&](const char* k) -> const std::string& {
    auto it = sax.meta.find(k);
    if (it == sax.meta.end()) throw fail(std::string("__metadata__ has no \"") + k + "\" (not written by lowbit?)");
    return it->second;
  };
  const std::string& version = meta_str("format_version");
  if (version != kFormatVersion)
    throw fail("__metadata__.format_version is " + json_quoted(version) + ", this build reads \"" + kFormatVersion + "\"");
  uint32_t want_crc = 0, want_hcrc = 0;
  if (!parse_crc_hex(meta_str("crc32"), &want_crc))
    throw fail("__metadata__.crc32 is " + json_quoted(meta_str("crc32")) + ", not 8 lowercase hex digits");
  if (!parse_crc_hex(meta_str("header_crc32"), &want_hcrc))
    throw fail("__metadata__.header_crc32 is " + json_quoted(meta_str("header_crc32")) + ", not 8 lowercase hex digits");
  const std::string& meta_text = meta_str("lowbit");
  if (meta_text.size() > kMaxMetaBytes)
    throw fail("__metadata__.lowbit is " + std::to_string(meta_text.size()) + " bytes, above the " +
               std::to_string(kMaxMetaBytes) + "-byte limit");

  // The tensors must tile the data section exactly: no overlap, no hole, nothing after the last.
  std::sort(parsed.begin(), parsed.end(), [](const Parsed& a, const Parsed& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.end != b.end) return a.end < b.end;
    return a.order < b.order;
  });
  uint64_t cursor = 0;
  const std::string* prev = nullptr;
  for (const Parsed& p : parsed) {
    auto who = [&] { return "tensor " + json_quoted(p.entry.name); };
    if (p.begin < cursor)
      throw fail(who() + " [" + std::to_string(p.begin) + ", " + std::to_string(p.end) + ") overlaps tensor " +
                 json_quoted(*prev) + " ending at " + std::to_string(cursor));
    if (p.begin > cursor)
      throw fail("hole of " + std::to_string(p.begin - cursor) + " bytes in the data section before " + who() +
                 " (safetensors forbids holes)");
    cursor = p.end;
    prev = &p.entry.name;
  }
  if (cursor != data_len)
    throw fail(std::to_string(data_len - cursor) + " trailing bytes after the last tensor (data section is " +
               std::to_string(data_len) + " bytes, tensors cover " + std::to_string(cursor) + ")");

  // All ranges are now known to lie inside the file and not to overlap: copying them allocates at
  // most data_len bytes in total.
  SafetensorsFile out;
  out.source = name;
  out.tensors.reserve(parsed.size());
  for (Parsed& p : parsed) {
    p.entry.bytes.assign(section + p.begin, section + p.end);
    out.tensors.push_back(std::move(p.entry));
  }

  DepthSax depth;
  if (!nlohmann::json::sax_parse(meta_text.begin(), meta_text.end(), &depth) || !depth.error.empty())
    throw fail("__metadata__.lowbit: " + (depth.error.empty() ? std::string("invalid JSON") : depth.error));
  out.meta = nlohmann::json::parse(meta_text);  // cannot fail: validated just above

  // Checksums last, so that a fuzzer exercises everything above even though it rarely forges one.
  if (!verify_checksums) return out;
  std::vector<const TensorEntry*> order;
  order.reserve(out.tensors.size());
  for (const TensorEntry& t : out.tensors) order.push_back(&t);
  uint32_t got_hcrc = header_digest(meta_text, order);
  if (got_hcrc != want_hcrc)
    throw fail("header checksum mismatch: metadata and tensor table digest to " + crc_hex(got_hcrc) +
               ", header says " + crc_hex(want_hcrc) + " (header corrupted)");
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
    throw Error("tensor " + json_quoted(name) + ": shape " + shape_text(shape) + " has " + std::to_string(numel) +
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
    throw Error("tensor " + json_quoted(e.name) + ": dtype is " + json_quoted(e.dtype) + ", expected \"" + dtype + "\"");
  int64_t numel = shape_numel64(e.shape);
  uint64_t want;
  if (__builtin_mul_overflow(static_cast<uint64_t>(numel), static_cast<uint64_t>(esize), &want) ||
      e.bytes.size() != want)
    throw Error("tensor " + json_quoted(e.name) + ": holds " + std::to_string(e.bytes.size()) + " bytes, shape " +
                shape_text(e.shape) + " of " + dtype + " needs " + std::to_string(numel) + " x " +
                std::to_string(esize));
  return static_cast<size_t>(numel);
}

static void copy_out(const TensorEntry& e, const char* dtype, size_t esize, void* out, size_t n) {
  size_t have = checked_count(e, dtype, esize);
  if (have != n)
    throw Error("tensor " + json_quoted(e.name) + ": has " + std::to_string(have) + " elements (shape " +
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
      throw Error("tensor " + json_quoted(e.name) + ": dimension " + std::to_string(d) + " does not fit an int");
    shape.push_back(static_cast<int>(d));
  }
  Tensor t(shape);
  if (n) std::memcpy(t.data(), e.bytes.data(), n * sizeof(float));
  return t;
}

}  // namespace lowbit
