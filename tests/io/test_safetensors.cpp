// Tests for the safetensors writer and strict reader: round trips of every dtype, the byte layout
// checked independently of the reader, and every kind of corruption rejected with a message that
// names the file. Files for the corruption cases are built by hand here (header text + data +
// zlib crc32 computed in the test), so each case carries exactly one fault.
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "lowbit/io.h"

using lowbit::SafetensorsFile;
using lowbit::TensorEntry;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/lowbit_st_test_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path = buf.data();
  }
  ~TempDir() {
    std::string cmd = "rm -rf '" + path + "'";
    if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", path.c_str());
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

std::string crc_hex(const std::string& data) {
  uLong c = ::crc32(0L, Z_NULL, 0);
  c = ::crc32(c, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size()));
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08lx", c);
  return buf;
}

// A file from raw header text and data section: [u64 LE len][header][data].
std::string raw_file(const std::string& header, const std::string& data) {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + header + data;
}

// One tensor as the header digest sees it: name, dtype, dims joined by ','.
struct Row {
  std::string name, dtype, dims;
};

// header_crc32 as specified in io.h, computed independently: netstring pieces of the lowbit
// metadata text, then name, dtype, dims of each tensor in data order.
std::string header_crc_hex(const std::string& meta_text, const std::vector<Row>& rows) {
  std::string s;
  auto piece = [&](const std::string& x) { s += std::to_string(x.size()) + ":" + x + ","; };
  piece(meta_text);
  for (const Row& r : rows) {
    piece(r.name);
    piece(r.dtype);
    piece(r.dims);
  }
  return crc_hex(s);
}

// A valid lowbit __metadata__ entry for this data section and tensor table.
std::string meta_entry(const std::string& data, const std::string& lowbit_json = "{}",
                       const std::vector<Row>& rows = {}) {
  nlohmann::json md = {{"format_version", "1"},
                       {"lowbit", lowbit_json},
                       {"crc32", crc_hex(data)},
                       {"header_crc32", header_crc_hex(lowbit_json, rows)}};
  return "\"__metadata__\":" + md.dump();
}

// Header with valid metadata plus the given tensor entries text (comma-joined by the caller).
// rows: the table for header_crc32; cases that fail before the checksums may leave it empty.
std::string file_with(const std::string& tensors_json, const std::string& data, const std::vector<Row>& rows = {}) {
  std::string h = "{";
  h += meta_entry(data, "{}", rows);
  if (!tensors_json.empty()) h += ",";
  h += tensors_json;
  h += "}";
  return raw_file(h, data);
}

std::string parse_error(const std::string& bytes, const std::string& name = "bad.safetensors") {
  try {
    lowbit::parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), name);
  } catch (const lowbit::Error& e) {
    return e.what();
  }
  return "<accepted>";
}

// The corruption case must be rejected, the message must name the file and contain `what`.
void expect_rejected(const std::string& bytes, const std::string& what, const char* label) {
  std::string msg = parse_error(bytes, "case.safetensors");
  EXPECT_EQ(msg.rfind("case.safetensors: ", 0), 0u) << label << ": message does not start with the file name: " << msg;
  EXPECT_NE(msg.find(what), std::string::npos) << label << ": expected \"" << what << "\" in: " << msg;
}

SafetensorsFile sample_file() {
  SafetensorsFile f;
  f.meta = {{"arch", "lenet5"},
            {"layers", {{{"name", "conv1"}, {"scale", 0.0123456789012345}, {"zero_point", -3}, {"bits", 8}}}},
            {"note", "ünïcödé ✓"},
            {"big", 1234567890123456789LL}};
  const float w[6] = {1.5f, -0.0f, std::numeric_limits<float>::infinity(), 3.0e-39f /*denormal*/,
                      -std::numeric_limits<float>::max(), std::nanf("")};
  const int8_t q[5] = {-128, -1, 0, 1, 127};
  const uint8_t u[3] = {0, 128, 255};
  const int32_t b[4] = {std::numeric_limits<int32_t>::min(), -1, 7, std::numeric_limits<int32_t>::max()};
  f.tensors.push_back(lowbit::tensor_f32("conv1.weight", {2, 3}, w, 6));
  f.tensors.push_back(lowbit::tensor_i8("conv1.qweight", {5}, q, 5));
  f.tensors.push_back(lowbit::tensor_u8("u8.vec", {1, 3}, u, 3));
  f.tensors.push_back(lowbit::tensor_i32("conv1.bias", {2, 2}, b, 4));
  float s = 42.0f;
  f.tensors.push_back(lowbit::tensor_f32("scalar", {}, &s, 1));
  f.tensors.push_back(lowbit::tensor_i8("empty_a", {0}, nullptr, 0));
  f.tensors.push_back(lowbit::tensor_i32("empty_b", {2, 0, 3}, nullptr, 0));
  f.tensors.push_back(lowbit::tensor_u8("tail", {1}, u + 2, 1));
  return f;
}

std::string serialize(const SafetensorsFile& f) { return lowbit::serialize_safetensors(f); }

}  // namespace

TEST(IoSafetensors, RoundTripEveryDtypeAndMetadata) {
  TempDir d;
  const std::string p = d.file("m.safetensors");
  SafetensorsFile f = sample_file();
  lowbit::write_safetensors(p, f);
  SafetensorsFile g = lowbit::read_safetensors(p);
  EXPECT_EQ(g.source, p);
  EXPECT_EQ(g.meta, f.meta) << "got " << g.meta.dump() << "\nwant " << f.meta.dump();
  ASSERT_EQ(g.tensors.size(), f.tensors.size());
  for (size_t i = 0; i < f.tensors.size(); ++i) {
    const TensorEntry& a = f.tensors[i];
    const TensorEntry& b = g.tensors[i];
    EXPECT_EQ(b.name, a.name) << "tensor order differs at " << i;
    EXPECT_EQ(b.dtype, a.dtype) << a.name;
    EXPECT_EQ(b.shape, a.shape) << a.name;
    EXPECT_TRUE(b.bytes == a.bytes) << a.name << ": bytes differ (NaN/-0/denormal must survive bit-exactly)";
  }
  // Typed access.
  std::vector<float> w = lowbit::to_f32(g.get("conv1.weight"));
  ASSERT_EQ(w.size(), 6u);
  EXPECT_EQ(w[0], 1.5f);
  EXPECT_TRUE(std::signbit(w[1]) && w[1] == 0.0f);
  EXPECT_TRUE(std::isinf(w[2]));
  EXPECT_TRUE(std::isnan(w[5]));
  EXPECT_EQ(lowbit::to_i8(g.get("conv1.qweight")), (std::vector<int8_t>{-128, -1, 0, 1, 127}));
  EXPECT_EQ(lowbit::to_u8(g.get("u8.vec")), (std::vector<uint8_t>{0, 128, 255}));
  EXPECT_EQ(lowbit::to_i32(g.get("conv1.bias"))[0], std::numeric_limits<int32_t>::min());
  EXPECT_EQ(lowbit::to_f32(g.get("scalar")), std::vector<float>{42.0f});
  EXPECT_TRUE(lowbit::to_i32(g.get("empty_b")).empty());
  EXPECT_EQ(g.find("missing"), nullptr);
  std::string msg;
  try {
    g.get("missing");
  } catch (const lowbit::Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
}

TEST(IoSafetensors, RoundTripEmptyAndNullMeta) {
  SafetensorsFile f;  // no tensors, null meta
  std::string bytes = serialize(f);
  SafetensorsFile g = lowbit::parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "x");
  EXPECT_TRUE(g.meta.is_null());
  EXPECT_TRUE(g.tensors.empty());
}

TEST(IoSafetensors, LayoutMatchesSpecIndependentlyOfReader) {
  // Check the bytes with plain code and nlohmann, not with parse_safetensors.
  SafetensorsFile f = sample_file();
  std::string bytes = serialize(f);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[static_cast<size_t>(i)])) << (8 * i);
  ASSERT_LE(8 + n, bytes.size());
  EXPECT_EQ((8 + n) % 8, 0u) << "data section not 8-byte aligned";
  std::string header = bytes.substr(8, n);
  EXPECT_EQ(header[0], '{');
  size_t last = header.find_last_not_of(' ');
  EXPECT_EQ(header[last], '}') << "padding must be spaces only";
  nlohmann::json h = nlohmann::json::parse(header);
  std::string data = bytes.substr(8 + n);
  ASSERT_TRUE(h["__metadata__"].is_object());
  for (auto& kv : h["__metadata__"].items()) EXPECT_TRUE(kv.value().is_string()) << kv.key();
  EXPECT_EQ(h["__metadata__"]["format_version"], "1");
  EXPECT_EQ(h["__metadata__"]["crc32"], crc_hex(data));
  EXPECT_EQ(nlohmann::json::parse(h["__metadata__"]["lowbit"].get<std::string>()), f.meta);
  std::vector<Row> rows;
  for (const TensorEntry& t : f.tensors) {
    std::string dims;
    for (size_t i = 0; i < t.shape.size(); ++i) {
      if (i) dims += ',';
      dims += std::to_string(t.shape[i]);
    }
    rows.push_back({t.name, t.dtype, dims});
  }
  EXPECT_EQ(h["__metadata__"]["header_crc32"], header_crc_hex(h["__metadata__"]["lowbit"].get<std::string>(), rows));
  uint64_t cursor = 0;
  for (const TensorEntry& t : f.tensors) {
    const auto& e = h[t.name];
    ASSERT_TRUE(e.is_object()) << t.name;
    EXPECT_EQ(e["dtype"], t.dtype) << t.name;
    EXPECT_EQ(e["shape"].get<std::vector<int64_t>>(), t.shape) << t.name;
    EXPECT_EQ(e["data_offsets"][0].get<uint64_t>(), cursor) << t.name;
    EXPECT_EQ(e["data_offsets"][1].get<uint64_t>(), cursor + t.bytes.size()) << t.name;
    EXPECT_TRUE(std::equal(t.bytes.begin(), t.bytes.end(), reinterpret_cast<const uint8_t*>(data.data()) + cursor))
        << t.name;
    cursor += t.bytes.size();
  }
  EXPECT_EQ(cursor, data.size());
}

TEST(IoSafetensors, ReadsHandBuiltFileWithHeaderOutOfDataOrder) {
  // Another writer may list tensors in any order and use other legal JSON spacing; the reader
  // returns them in data order.
  std::string data;
  const int32_t a[2] = {1, -2};
  data.append(reinterpret_cast<const char*>(a), 8);
  data.push_back(static_cast<char>(0xff));
  std::string tensors =
      "\n \"b\" : {\"shape\":[1], \"data_offsets\":[8,9], \"dtype\":\"U8\"},"
      "\"a\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}";
  std::string bytes = file_with(tensors, data, {{"a", "I32", "2"}, {"b", "U8", "1"}});
  SafetensorsFile g = lowbit::parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "h");
  ASSERT_EQ(g.tensors.size(), 2u);
  EXPECT_EQ(g.tensors[0].name, "a");
  EXPECT_EQ(lowbit::to_i32(g.tensors[0]), (std::vector<int32_t>{1, -2}));
  EXPECT_EQ(g.tensors[1].name, "b");
  EXPECT_EQ(lowbit::to_u8(g.tensors[1]), std::vector<uint8_t>{255});
}

TEST(IoSafetensors, RejectsEachCorruptionWithFileName) {
  const std::string d4 = std::string("\x01\x02\x03\x04", 4);
  const std::string ok_t = "\"t\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]}";
  const std::vector<Row> ok_rows = {{"t", "I8", "4"}};
  // Sanity: the base case is accepted, so each case below fails for its own fault.
  ASSERT_EQ(parse_error(file_with(ok_t, d4, ok_rows)), "<accepted>");

  expect_rejected("", "shorter than the 8-byte", "empty file");
  expect_rejected(std::string("\x05\0\0\0", 4), "shorter than the 8-byte", "4-byte file");
  expect_rejected(raw_file("{}", "").substr(0, 8) + "{", "runs past the end", "header longer than file");
  {
    std::string b = file_with(ok_t, d4);
    b[3] = 0x10;  // header length ~ 268 MB
    expect_rejected(b, "limit", "absurd header length");
    std::string c = file_with(ok_t, d4);
    for (int i = 0; i < 8; ++i) c[static_cast<size_t>(i)] = '\xff';
    expect_rejected(c, "limit", "header length 2^64-1");
  }
  expect_rejected(raw_file("", ""), "does not start with '{'", "zero header length");
  expect_rejected(raw_file("[1]", ""), "does not start with '{'", "array header");
  expect_rejected(raw_file(" {}", ""), "does not start with '{'", "leading space");
  expect_rejected(raw_file("{\"__metadata__\":", ""), "invalid JSON", "truncated JSON");
  expect_rejected(raw_file("{} x", ""), "invalid JSON", "garbage after JSON in header");
  expect_rejected(raw_file("{\"a\":\"\xff\"}", ""), "invalid JSON", "invalid UTF-8");
  expect_rejected(raw_file(std::string("{}\0junk", 7), ""), "NUL byte", "NUL after the JSON");
  expect_rejected(raw_file("{}", ""), "no __metadata__", "missing metadata");
  expect_rejected(raw_file("{\"__metadata__\":[]}", ""), "__metadata__ is not an object", "metadata array");
  expect_rejected(raw_file("{\"__metadata__\":{\"format_version\":1}}", ""), "not a string", "non-string metadata");
  expect_rejected(raw_file("{\"__metadata__\":{\"lowbit\":\"{}\",\"crc32\":\"00000000\"}}", ""), "format_version",
                  "missing format_version");
  expect_rejected(raw_file("{\"__metadata__\":{\"format_version\":\"2\",\"lowbit\":\"{}\",\"crc32\":\"00000000\"}}", ""),
                  "format_version is \"2\"", "future version");
  expect_rejected(raw_file("{\"__metadata__\":{\"format_version\":\"1\",\"lowbit\":\"{}\"}}", ""), "crc32",
                  "missing crc32");
  expect_rejected(raw_file("{\"__metadata__\":{\"format_version\":\"1\",\"lowbit\":\"{}\",\"crc32\":\"0000000G\"}}", ""),
                  "not 8 lowercase hex digits", "bad crc text");
  expect_rejected(raw_file("{\"__metadata__\":{\"format_version\":\"1\",\"lowbit\":\"{}\",\"crc32\":\"00000000\"}}", ""),
                  "\"header_crc32\"", "missing header_crc32");
  expect_rejected(
      raw_file("{\"__metadata__\":{\"format_version\":\"1\",\"crc32\":\"00000000\",\"header_crc32\":\"00000000\"}}", ""),
      "\"lowbit\"", "missing lowbit meta");
  {
    std::string many = "{\"__metadata__\":{";
    for (int i = 0; i < 65; ++i) many += "\"k" + std::to_string(i) + "\":\"v\",";
    many += "\"format_version\":\"1\"}}";
    expect_rejected(raw_file(many, ""), "more than 64 entries", "too many metadata entries");
  }
  expect_rejected(raw_file("{" + meta_entry("", std::string(17u << 20, ' ')) + "}", ""), "-byte limit",
                  "lowbit meta too large");
  expect_rejected(raw_file("{" + meta_entry("", "{not json") + "}", ""), "__metadata__.lowbit: invalid JSON",
                  "lowbit meta not JSON");
  expect_rejected(raw_file("{" + meta_entry("", std::string(100, '[') + std::string(100, ']')) + "}", ""),
                  "nested deeper", "lowbit meta nested too deep");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"shape\":[[4]],\"data_offsets\":[0,4]}", d4),
                  "shape entry an array is not a non-negative integer", "nested shape");
  expect_rejected(file_with("\"t\":7", d4), "tensor \"t\": entry is not an object", "entry number");

  expect_rejected(file_with("\"t\":[]", d4), "entry is not an object", "entry array");
  expect_rejected(file_with("\"t\":{\"shape\":[4],\"data_offsets\":[0,4]}", d4), "\"dtype\" missing", "no dtype");
  expect_rejected(file_with("\"t\":{\"dtype\":8,\"shape\":[4],\"data_offsets\":[0,4]}", d4), "\"dtype\" is 8, not a string",
                  "dtype not string");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"data_offsets\":[0,4]}", d4), "\"shape\" missing", "no shape");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"shape\":4,\"data_offsets\":[0,4]}", d4), "\"shape\" is 4, not an array",
                  "shape not array");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"shape\":[4]}", d4), "\"data_offsets\" missing", "no offsets");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4,4]}", d4),
                  "\"data_offsets\" has more than 2 entries", "3 offsets");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[4]}", d4),
                  "\"data_offsets\" has 1 entries, needs 2", "1 offset");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,\"4\"]}", d4),
                  "data_offsets entry \"4\" is not a non-negative integer", "string offset");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[-1,4]}", d4),
                  "data_offsets entry -1 is not a non-negative integer", "negative offset");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4],\"x\":1}", d4),
                  "unknown field \"x\"", "extra field");
  expect_rejected(file_with("\"t\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}", d4),
                  "unsupported dtype \"F16\"", "F16");
  expect_rejected(file_with("\"t\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}", d4),
                  "unsupported dtype", "lower-case dtype");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"shape\":[-4],\"data_offsets\":[0,4]}", d4),
                  "shape entry -4 is not a non-negative integer", "negative dim");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"shape\":[4.0],\"data_offsets\":[0,4]}", d4),
                  "is not a non-negative integer", "float dim");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"shape\":[9223372036854775808],\"data_offsets\":[0,4]}", d4),
                  "is not a non-negative integer", "dim above int64");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}", d4),
                  "overflows int64", "numel overflow");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I32\",\"shape\":[2305843009213693952,2],\"data_offsets\":[0,4]}", d4),
                  "overflows the byte size", "byte size overflow");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"shape\":[4294967296,4294967296,0],\"data_offsets\":[0,0]}", ""),
                  "overflows int64", "overflow before a zero dim");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[0,4]}", d4), "span 4 bytes",
                  "offsets vs shape");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"shape\":[0],\"data_offsets\":[4,0]}", d4), "begin > end",
                  "begin > end");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"shape\":[8],\"data_offsets\":[0,8]}", d4),
                  "end past the data section", "end beyond data");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[18446744073709551615,0]}", d4),
                  "data_offsets entry 18446744073709551615 is not", "offset 2^64-1");
  expect_rejected(file_with("\"a\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                            "\"b\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[2,4]}",
                            d4),
                  "overlaps tensor \"a\"", "overlap");
  expect_rejected(file_with("\"a\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                            "\"b\":{\"dtype\":\"I8\",\"shape\":[0],\"data_offsets\":[2,2]}",
                            d4),
                  "overlaps", "empty tensor inside another");
  expect_rejected(file_with("\"a\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                            "\"b\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]}",
                            d4),
                  "overlaps", "same range twice");
  expect_rejected(file_with("\"a\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                            "\"b\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[2,4]}",
                            d4),
                  "hole of 1 bytes", "hole");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[1,4]}", d4), "hole",
                  "hole at start");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]}", d4 + "junk"),
                  "4 trailing bytes", "trailing garbage");
  expect_rejected(file_with("", d4), "4 trailing bytes", "data but no tensors");
  expect_rejected(file_with(ok_t + "," + ok_t, d4), "duplicate tensor name \"t\"", "duplicate tensor name");
  expect_rejected(file_with("\"t\":{\"dtype\":\"I8\",\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]}", d4),
                  "duplicate key \"dtype\"", "duplicate field");
  expect_rejected(raw_file("{" + meta_entry(d4) + "," + meta_entry(d4) + "," + ok_t + "}", d4), "duplicate key",
                  "duplicate metadata");
  expect_rejected(file_with("\"\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]}", d4), "empty name",
                  "empty tensor name");
  {
    std::string b = file_with(ok_t, d4, ok_rows);
    b[b.size() - 1] ^= 0x01;
    expect_rejected(b, "data section crc32", "flipped data bit");
    std::string c = file_with(ok_t, d4, ok_rows);
    c.replace(c.find("\"I8\""), 4, "\"U8\"");
    expect_rejected(c, "header checksum mismatch", "dtype changed in the header");
    expect_rejected(file_with(ok_t, d4, {{"t", "I8", "2,2"}}), "header checksum mismatch", "digest of other dims");
  }
}

TEST(IoSafetensors, ReadFileErrorsNameTheFile) {
  TempDir d;
  const std::string p = d.file("broken.safetensors");
  lowbit::write_file_atomic(p, std::string("\x03\0\0\0\0\0\0\0{}x", 11));
  std::string msg;
  try {
    lowbit::read_safetensors(p);
  } catch (const lowbit::Error& e) {
    msg = e.what();
  }
  EXPECT_EQ(msg.rfind(p + ": ", 0), 0u) << msg;
  msg.clear();
  try {
    lowbit::read_safetensors(d.file("missing.safetensors"));
  } catch (const lowbit::Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("missing.safetensors"), std::string::npos) << msg;
}

TEST(IoSafetensors, EveryFlippedDataByteIsCaught) {
  std::string bytes = serialize(sample_file());
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[static_cast<size_t>(i)])) << (8 * i);
  for (size_t i = 8 + n; i < bytes.size(); ++i) {
    for (int bit : {0, 7}) {
      std::string b = bytes;
      b[i] = static_cast<char>(b[i] ^ (1 << bit));
      std::string msg = parse_error(b);
      EXPECT_NE(msg.find("data section crc32"), std::string::npos) << "byte " << i << " bit " << bit << ": " << msg;
    }
  }
}

TEST(IoSafetensors, EveryFlippedByteAnywhereIsRejected) {
  // Header included: header_crc32 covers the metadata and the tensor table, so no single-byte
  // change anywhere yields a file that is accepted, and nothing but lowbit::Error is thrown.
  std::string bytes = serialize(sample_file());
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (uint8_t x : {uint8_t{0x01}, uint8_t{0x20}, uint8_t{0x80}, uint8_t{0xff}}) {
      std::string b = bytes;
      b[i] = static_cast<char>(b[i] ^ x);
      try {
        lowbit::parse_safetensors(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "f");
        ADD_FAILURE() << "byte " << i << " xor " << int(x) << " accepted";
      } catch (const lowbit::Error&) {
      } catch (const std::exception& e) {
        ADD_FAILURE() << "byte " << i << " xor " << int(x) << ": non-lowbit exception: " << e.what();
      }
    }
  }
}

TEST(IoSafetensors, TruncationAtEveryOffsetIsRejected) {
  std::string bytes = serialize(sample_file());
  for (size_t len = 0; len < bytes.size(); ++len) {
    // Copy into an exactly-sized heap buffer so ASan would flag any read past the end.
    std::vector<uint8_t> buf(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(len));
    std::string msg;
    try {
      lowbit::parse_safetensors(buf.data(), buf.size(), "trunc.safetensors");
      msg = "<accepted>";
    } catch (const lowbit::Error& e) {
      msg = e.what();
    }
    EXPECT_EQ(msg.rfind("trunc.safetensors: ", 0), 0u) << "truncated to " << len << " of " << bytes.size() << ": " << msg;
  }
}

TEST(IoSafetensors, WriterRejectsInconsistentTensors) {
  auto writer_error = [](const SafetensorsFile& f) -> std::string {
    try {
      lowbit::serialize_safetensors(f);
    } catch (const lowbit::Error& e) {
      return e.what();
    }
    return "<accepted>";
  };
  TensorEntry good = {"t", "I8", {2}, {1, 2}};
  SafetensorsFile f;
  f.tensors = {good};
  EXPECT_EQ(writer_error(f), "<accepted>");
  f.tensors = {{"t", "I8", {3}, {1, 2}}};
  EXPECT_NE(writer_error(f).find("needs 3 x 1 bytes, has 2"), std::string::npos) << writer_error(f);
  f.tensors = {{"t", "F16", {1}, {1, 2}}};
  EXPECT_NE(writer_error(f).find("unsupported dtype"), std::string::npos) << writer_error(f);
  f.tensors = {{"t", "I8", {-2}, {}}};
  EXPECT_NE(writer_error(f).find("negative"), std::string::npos) << writer_error(f);
  f.tensors = {good, good};
  EXPECT_NE(writer_error(f).find("duplicate"), std::string::npos) << writer_error(f);
  f.tensors = {{"__metadata__", "I8", {2}, {1, 2}}};
  EXPECT_NE(writer_error(f).find("reserved"), std::string::npos) << writer_error(f);
  f.tensors = {{"", "I8", {2}, {1, 2}}};
  EXPECT_NE(writer_error(f).find("empty name"), std::string::npos) << writer_error(f);
  f.tensors = {{"bad\xff", "I8", {2}, {1, 2}}};
  EXPECT_NE(writer_error(f).find("UTF-8"), std::string::npos) << writer_error(f);
  f.tensors = {good};
  f.meta = nlohmann::json::parse(std::string(65, '[') + std::string(65, ']'));  // reader allows 64 levels
  EXPECT_NE(writer_error(f).find("nested deeper than 64"), std::string::npos) << writer_error(f);
  f.meta = nlohmann::json::parse(std::string(64, '[') + std::string(64, ']'));
  EXPECT_EQ(writer_error(f), "<accepted>");
}

TEST(IoSafetensors, FailedWriteKeepsPreviousFile) {
  TempDir d;
  const std::string p = d.file("m.safetensors");
  SafetensorsFile f = sample_file();
  lowbit::write_safetensors(p, f);
  std::string before = lowbit::read_file(p);
  SafetensorsFile bad = f;
  bad.tensors[0].bytes.pop_back();
  std::string msg;
  try {
    lowbit::write_safetensors(p, bad);
  } catch (const lowbit::Error& e) {
    msg = e.what();
  }
  EXPECT_EQ(msg.rfind(p + ": ", 0), 0u) << msg;
  EXPECT_TRUE(lowbit::read_file(p) == before);
}

TEST(IoSafetensors, TypedHelpersCheckDtypeAndCount) {
  const float v[4] = {1, 2, 3, 4};
  EXPECT_THROW(lowbit::tensor_f32("w", {2, 3}, v, 4), lowbit::Error);
  TensorEntry e = lowbit::tensor_f32("w", {2, 2}, v, 4);
  float out[4] = {};
  lowbit::copy_f32(e, out, 4);
  EXPECT_EQ(out[3], 4.0f);
  std::string msg;
  try {
    int8_t o8[4];
    lowbit::copy_i8(e, o8, 4);
  } catch (const lowbit::Error& err) {
    msg = err.what();
  }
  EXPECT_NE(msg.find("\"w\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("dtype is \"F32\", expected \"I8\""), std::string::npos) << msg;
  msg.clear();
  try {
    lowbit::copy_f32(e, out, 3);
  } catch (const lowbit::Error& err) {
    msg = err.what();
  }
  EXPECT_NE(msg.find("has 4 elements"), std::string::npos) << msg;
  // Bytes inconsistent with the shape are caught too (an entry built by hand).
  TensorEntry broken = {"b", "I32", {3}, {0, 0, 0, 0}};
  EXPECT_THROW(lowbit::to_i32(broken), lowbit::Error);

  lowbit::Tensor t({2, 3});
  for (int i = 0; i < 6; ++i) t[i] = static_cast<float>(i) * 0.5f;
  TensorEntry te = lowbit::tensor_from("t", t);
  EXPECT_EQ(te.shape, (std::vector<int64_t>{2, 3}));
  lowbit::Tensor back = lowbit::to_tensor(te);
  ASSERT_EQ(back.shape(), t.shape());
  for (int i = 0; i < 6; ++i) EXPECT_EQ(back[i], t[i]) << "index " << i;
  TensorEntry huge = {"h", "F32", {int64_t{1} << 33, 0}, {}};
  EXPECT_THROW(lowbit::to_tensor(huge), lowbit::Error);
}

TEST(IoSafetensors, ManyTensorsParseInLinearTime) {
  // Regression: the first reader used nlohmann's callback DOM parser, which rescans the parent
  // object at every end of object (quadratic in the number of tensors: 1.7M entries ran for
  // minutes). The streaming reader takes ~0.1 s here; the bound is loose for a busy machine.
  SafetensorsFile f;
  const int n = 100000;
  f.tensors.reserve(n);
  for (int i = 0; i < n; ++i) f.tensors.push_back({"t" + std::to_string(i), "U8", {1}, {static_cast<uint8_t>(i)}});
  std::string bytes = serialize(f);
  auto t0 = std::chrono::steady_clock::now();
  SafetensorsFile g = lowbit::parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "many");
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(g.tensors.size(), static_cast<size_t>(n));
  EXPECT_EQ(g.tensors[n - 1].name, "t" + std::to_string(n - 1));
  EXPECT_EQ(g.tensors[n - 1].bytes[0], static_cast<uint8_t>(n - 1));
  EXPECT_LT(s, 5.0) << "parsing " << n << " tensors (" << bytes.size() << " bytes) took " << s << " s";
}
