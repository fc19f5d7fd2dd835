// lowbit's file layer: atomic whole-file writes, whole-file reads, and a strict safetensors
// reader/writer (DESIGN.md section 4).
// Not here: anything that knows about layers, models or quantization. Callers put their structured
// metadata in SafetensorsFile::meta and their weights in named tensors.
//
// Safetensors layout (https://huggingface.co/docs/safetensors):
//   [u64 little-endian N][N bytes JSON header, padded with spaces][data section]
//   header = {"__metadata__": {string: string}, "<name>": {"dtype", "shape", "data_offsets"}, ...}
// lowbit's __metadata__ holds four strings:
//   "format_version": "1"
//   "lowbit":         SafetensorsFile::meta serialized as JSON text (safetensors allows only
//                     strings), at most 16 MiB
//   "crc32":          zlib crc32 of the whole data section, 8 lowercase hex digits
//   "header_crc32":   zlib crc32 of the header's content, so that a flipped digit in a scale or a
//                     dtype is caught too: the concatenation of pieces "<len>:<bytes>," for the
//                     "lowbit" text, then for each tensor in data order its name, dtype and dims
//                     (decimal, joined by ","; "" for a scalar).
// Other __metadata__ string entries (up to 64) are accepted and ignored.
// The writer lays tensors out in the order given, contiguously, data section aligned to 8 bytes.
// The reader accepts only files that tile the data section exactly (the spec forbids holes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lowbit/core.h"

namespace lowbit {

// ---- plain files ----

// Writes n bytes to path so that a reader sees either the old file or the complete new one:
// write to path + ".tmp.<pid>.<counter>" in the same directory, fsync, rename over path, fsync the
// directory. On any failure the temp file is removed and an Error naming the path and the
// system's reason (strerror) is thrown; the previous file under path, if any, is untouched.
void write_file_atomic(const std::string& path, const void* data, size_t n);
void write_file_atomic(const std::string& path, const std::string& bytes);

// Reads a whole file. Error (naming the path) when missing, a directory, unreadable, or a read
// fails part way.
std::string read_file(const std::string& path);

// ---- safetensors ----

// One tensor: dtype is "F32", "I8", "U8" or "I32"; shape may be [] (a scalar, one element) and may
// contain zeros (an empty tensor); bytes holds numel * dtype size little-endian bytes.
struct TensorEntry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

struct SafetensorsFile {
  nlohmann::json meta;                // lowbit's structured metadata (any JSON value)
  std::vector<TensorEntry> tensors;   // on read: in data-section order (= the writer's order)
  std::string source;                 // on read: the path or name it came from, for messages

  const TensorEntry* find(const std::string& name) const;  // nullptr when absent
  const TensorEntry& get(const std::string& name) const;   // Error naming the tensor and source
};

// Serializes to the bytes of a safetensors file. Error when a name is empty, duplicated or
// "__metadata__", a dtype is unknown, a dim is negative, or bytes.size() != numel * dtype size.
std::string serialize_safetensors(const SafetensorsFile& f);
// serialize_safetensors + write_file_atomic.
void write_safetensors(const std::string& path, const SafetensorsFile& f);

// Strict parser over untrusted bytes. Every length, offset, type and both checksums are checked;
// anything that does not fit is an Error whose message starts with name_for_errors. Never reads
// out of bounds; streams the header (no DOM of it), so memory stays within a few times n and time
// linear in n (plus a sort of the tensor table); header at most 100 MB.
// verify_checksums = false skips only the two checksum comparisons (the fields must still be
// well formed): fuzz/fuzz_model.cpp uses it so that mutated files reach the model readers.
SafetensorsFile parse_safetensors(const uint8_t* data, size_t n, const std::string& name_for_errors,
                                  bool verify_checksums = true);
// read_file + parse_safetensors(path).
SafetensorsFile read_safetensors(const std::string& path);

// Bytes per element of a supported dtype; Error for anything else.
size_t dtype_size(const std::string& dtype);
// Product of dims; Error when a dim is negative or the product overflows int64.
int64_t shape_numel64(const std::vector<int64_t>& shape);

// Build a TensorEntry from n elements; Error when n != numel(shape).
TensorEntry tensor_f32(const std::string& name, const std::vector<int64_t>& shape, const float* data, size_t n);
TensorEntry tensor_i8(const std::string& name, const std::vector<int64_t>& shape, const int8_t* data, size_t n);
TensorEntry tensor_u8(const std::string& name, const std::vector<int64_t>& shape, const uint8_t* data, size_t n);
TensorEntry tensor_i32(const std::string& name, const std::vector<int64_t>& shape, const int32_t* data, size_t n);
TensorEntry tensor_from(const std::string& name, const Tensor& t);  // F32 with t's shape

// Copy a TensorEntry back into n elements at out; Error (naming the tensor, wanted and actual
// dtype / element count) when the dtype differs or numel != n.
void copy_f32(const TensorEntry& e, float* out, size_t n);
void copy_i8(const TensorEntry& e, int8_t* out, size_t n);
void copy_u8(const TensorEntry& e, uint8_t* out, size_t n);
void copy_i32(const TensorEntry& e, int32_t* out, size_t n);
// Whole-tensor copies; Error when the dtype differs.
std::vector<float> to_f32(const TensorEntry& e);
std::vector<int8_t> to_i8(const TensorEntry& e);
std::vector<uint8_t> to_u8(const TensorEntry& e);
std::vector<int32_t> to_i32(const TensorEntry& e);
// F32 entry to a Tensor; Error when the dtype is not F32 or a dim does not fit an int.
Tensor to_tensor(const TensorEntry& e);

}  // namespace lowbit
