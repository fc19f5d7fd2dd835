// Helpers for tests: temporary folders, running the CLI, small IDX files.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace lowbit::test {

// A fresh empty folder under /tmp, removed by the destructor.
struct TempDir {
  TempDir();
  ~TempDir();
  std::string path;
  std::string file(const std::string& name) const { return path + "/" + name; }
};

struct RunResult {
  int status;       // exit status
  std::string out;  // stdout and stderr together
};
// Runs the lowbit CLI with the given arguments (a shell-quoted string).
RunResult run_cli(const std::string& args);

// IDX bytes: magic 0x0000 08 rank, big-endian dims, then the values.
std::vector<uint8_t> idx_bytes(const std::vector<int>& dims, const std::vector<uint8_t>& values);
void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes);
void write_gzip(const std::string& path, const std::vector<uint8_t>& bytes);
// Writes a tiny MNIST-format data set (n training and n test images) into dir.
void write_tiny_dataset(const std::string& dir, int n, bool gz);
// Writes a tiny data set (n images) into dir and dir/m.st: LeNet-5 trained on it for 2 epochs.
void write_tiny_model(const std::string& dir, int n, bool bias, uint64_t seed);
bool file_exists(const std::string& path);
std::string slurp(const std::string& path);
bool have_fashion_mnist();

// A test suite sharing one folder, made once: a tiny data set of n images and m.st, LeNet-5
// trained on it (write_tiny_model). Each <n, bias, seed> is its own folder.
template <int N, bool Bias, uint64_t Seed>
class TinyModelSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir = new TempDir;
    write_tiny_model(dir->path, N, Bias, Seed);
  }
  static void TearDownTestSuite() {
    delete dir;
    dir = nullptr;
  }
  static std::string model() { return dir->file("m.st"); }
  static inline TempDir* dir = nullptr;
};

}  // namespace lowbit::test
