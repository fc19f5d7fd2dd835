// IDX reader (raw and gzip) and dataset loading. Every size comes from an untrusted file, so each
// is checked before use; errors name the file.
#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include "lowbit/data.h"
#include "nn/parallel.h"

namespace lowbit {

namespace {
constexpr size_t kMaxFile = size_t{1} << 31;  // 2 GiB: far beyond any MNIST-format set

std::string hex2(unsigned v) {
  const char* digits = "0123456789abcdef";
  return {digits[(v >> 4) & 15], digits[v & 15]};
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  struct stat st{};
  if (stat(path.c_str(), &st) != 0) throw Error(path + ": no such file");
  if (S_ISDIR(st.st_mode)) throw Error(path + ": is a directory, expected an IDX file");
  if (static_cast<size_t>(st.st_size) > kMaxFile) throw Error(path + ": file too large for an IDX file");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open for reading");
  std::vector<uint8_t> buf(static_cast<size_t>(st.st_size));
  if (!buf.empty() && !f.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(buf.size())))
    throw Error(path + ": read failed");
  return buf;
}
}  // namespace

std::vector<uint8_t> gunzip(const uint8_t* bytes, size_t n, const std::string& name, size_t limit) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) throw Error(name + ": zlib init failed");
  std::vector<uint8_t> out;
  zs.next_in = const_cast<Bytef*>(bytes);
  zs.avail_in = static_cast<uInt>(n);
  uint8_t chunk[1 << 16];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = chunk;
    zs.avail_out = sizeof chunk;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&zs);
      throw Error(name + ": corrupt or truncated gzip data" + (zs.msg ? std::string(" (") + zs.msg + ")" : ""));
    }
    out.insert(out.end(), chunk, chunk + (sizeof chunk - zs.avail_out));
    if (out.size() > limit) {
      inflateEnd(&zs);
      throw Error(name + ": decompressed data exceeds " + std::to_string(limit) + " bytes");
    }
    if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
      inflateEnd(&zs);
      throw Error(name + ": truncated gzip data");
    }
  }
  inflateEnd(&zs);
  return out;
}

IdxArray parse_idx(const uint8_t* b, size_t n, const std::string& name) {
  if (n < 4) throw Error(name + ": too short for an IDX header (" + std::to_string(n) + " bytes)");
  if (b[0] != 0 || b[1] != 0)
    throw Error(name + ": bad magic number (not an IDX file)");
  if (b[2] != 0x08) throw Error(name + ": unsupported IDX element type 0x" + hex2(b[2]) + " (only unsigned bytes, 0x08)");
  int rank = b[3];
  if (rank < 1 || rank > 4) throw Error(name + ": bad IDX rank " + std::to_string(rank) + " (expected 1..4)");
  size_t header = 4 + 4 * static_cast<size_t>(rank);
  if (n < header) throw Error(name + ": truncated IDX header");
  IdxArray a;
  uint64_t count = 1;
  for (int i = 0; i < rank; ++i) {
    const uint8_t* p = b + 4 + 4 * i;
    uint32_t d = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
    if (d > (1u << 30)) throw Error(name + ": dimension " + std::to_string(i) + " too large (" + std::to_string(d) + ")");
    a.dims.push_back(static_cast<int>(d));
    count *= d;
    if (count > kMaxFile) throw Error(name + ": IDX dimensions describe more than 2 GiB");
  }
  if (n - header < count)
    throw Error(name + ": truncated: header says " + std::to_string(count) + " values, file holds " + std::to_string(n - header));
  if (n - header > count)
    throw Error(name + ": " + std::to_string(n - header - count) + " bytes of trailing data after the IDX values");
  a.data.assign(b + header, b + header + count);
  return a;
}

IdxArray read_idx(const std::string& path) {
  std::vector<uint8_t> raw = read_bytes(path);
  if (raw.size() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b) {
    std::vector<uint8_t> inflated = gunzip(raw.data(), raw.size(), path, kMaxFile);
    return parse_idx(inflated.data(), inflated.size(), path);
  }
  return parse_idx(raw.data(), raw.size(), path);
}

std::string resolve_data_dir(const std::string& data) {
  if (data.empty() || data == "fashion-mnist") return "/usr/share/datasets/fashion-mnist";
  return data;
}

static std::string find_file(const std::string& dir, const std::string& base) {
  struct stat st{};
  for (const std::string& cand : {dir + "/" + base, dir + "/" + base + ".gz"})
    if (stat(cand.c_str(), &st) == 0) return cand;
  throw Error(dir + ": missing " + base + " (or " + base + ".gz)");
}

Dataset make_dataset(const IdxArray& images, const IdxArray& labels, const std::string& what) {
  if (images.dims.size() != 3 || images.dims[1] != 28 || images.dims[2] != 28)
    throw Error(what + ": images must be N x 28 x 28, got rank " + std::to_string(images.dims.size()));
  if (labels.dims.size() != 1) throw Error(what + ": labels must be a rank-1 IDX array");
  if (images.dims[0] != labels.dims[0])
    throw Error(what + ": " + std::to_string(images.dims[0]) + " images but " + std::to_string(labels.dims[0]) + " labels");
  if (images.dims[0] == 0) throw Error(what + ": the data set is empty");
  const int N = images.dims[0];
  Dataset d;
  d.labels = labels.data;
  for (int i = 0; i < N; ++i)
    if (d.labels[static_cast<size_t>(i)] >= 10)
      throw Error(what + ": label " + std::to_string(d.labels[static_cast<size_t>(i)]) + " at index " + std::to_string(i) + " is not in 0..9");
  d.images.resize({N, 1, 32, 32});
  float lut[256];
  for (int v = 0; v < 256; ++v) lut[v] = static_cast<float>(v) / 255.0f * 2.0f - 1.0f;
  for (int i = 0; i < N; ++i) {
    float* dst = d.images.data() + int64_t{i} * 1024;
    std::fill(dst, dst + 1024, -1.0f);
    const uint8_t* src = images.data.data() + size_t(i) * 784;
    for (int y = 0; y < 28; ++y)
      for (int x = 0; x < 28; ++x) dst[(y + 2) * 32 + x + 2] = lut[src[y * 28 + x]];
  }
  return d;
}

Dataset load_split(const std::string& data, bool train, int limit) {
  std::string dir = resolve_data_dir(data);
  struct stat st{};
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw Error("--data " + dir + ": no such folder" +
                (dir == "/usr/share/datasets/fashion-mnist" ? " (install it: apt-get install dataset-fashion-mnist)" : ""));
  std::string prefix = train ? "train" : "t10k";
  std::string ipath = find_file(dir, prefix + "-images-idx3-ubyte");
  std::string lpath = find_file(dir, prefix + "-labels-idx1-ubyte");
  IdxArray images = read_idx(ipath), labels = read_idx(lpath);
  if (limit > 0 && limit < images.dims.at(0) && images.dims.size() == 3 && labels.dims.size() == 1 &&
      images.dims[0] == labels.dims[0]) {
    images.dims[0] = labels.dims[0] = limit;
    images.data.resize(size_t(limit) * 784);
    labels.data.resize(size_t(limit));
  }
  return make_dataset(images, labels, ipath + " / " + lpath);
}

void gather_batch(const Dataset& d, const std::vector<int>& idx, int begin, int end, Tensor& x,
                  std::vector<uint8_t>& y) {
  const int B = end - begin;
  x.resize({B, 1, 32, 32});
  y.resize(size_t(B));
  // Threads copy the equal slices of the batch that Sequential's threads then take (for a batch
  // of whole tiles): each image lands in the cache of the core that reads it. Fewer than 16
  // images (4 KB each) per thread are not worth a parallel region.
  run_threads(std::min(threads(), std::max(1, B / 16)), [&](int th, int nth) {
    const Slice s = thread_slice(B, th, nth);
    for (int i = s.begin; i < s.end; ++i) {
      const int src = idx[size_t(begin + i)];
      std::memcpy(x.data() + int64_t{i} * 1024, d.images.data() + int64_t{src} * 1024, 1024 * sizeof(float));
      y[size_t(i)] = d.labels[size_t(src)];
    }
  });
}

}  // namespace lowbit
