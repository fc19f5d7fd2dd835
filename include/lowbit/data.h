// MNIST-format IDX data: strict reader (raw or gzipped), datasets, preprocessing, batching.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lowbit/core.h"

namespace lowbit {

// One IDX array of unsigned bytes (type code 0x08): dims and the raw values.
struct IdxArray {
  std::vector<int> dims;
  std::vector<uint8_t> data;
};

// Parses an IDX file already in memory (gunzipped). `name` is used in error messages.
IdxArray parse_idx(const uint8_t* bytes, size_t n, const std::string& name);
// Reads a raw or gzipped (detected by its magic bytes) IDX file.
IdxArray read_idx(const std::string& path);
// Decompresses gzip data with a hard size limit; throws Error naming `name` when corrupt.
std::vector<uint8_t> gunzip(const uint8_t* bytes, size_t n, const std::string& name, size_t limit);

// Images preprocessed as in seed 004: 28x28 padded to 32x32, pixels scaled to [-1, 1]
// (x / 255 * 2 - 1; the padding is the background value -1).
struct Dataset {
  Tensor images;                // (N, 1, 32, 32)
  std::vector<uint8_t> labels;  // N values in [0, 10)
  int size() const { return static_cast<int>(labels.size()); }
};

// "fashion-mnist" (or "") -> /usr/share/datasets/fashion-mnist; anything else is a folder.
std::string resolve_data_dir(const std::string& data);
// Loads the train or test split from a folder holding the four IDX files (optionally .gz).
// limit > 0 keeps only the first `limit` examples.
Dataset load_split(const std::string& data, bool train, int limit = 0);
Dataset make_dataset(const IdxArray& images, const IdxArray& labels, const std::string& what);

// Copies examples idx[begin, end) into a batch tensor (B, 1, 32, 32) and labels.
void gather_batch(const Dataset& d, const std::vector<int>& idx, int begin, int end, Tensor& x,
                  std::vector<uint8_t>& y);

}  // namespace lowbit
