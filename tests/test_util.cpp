#include "test_util.h"

#include "lowbit/train.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace lowbit::test {

TempDir::TempDir() {
  char tmpl[] = "/tmp/lowbit-test-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  path = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

RunResult run_cli(const std::string& args) {
  std::string cmd = std::string(LOWBIT_CLI_PATH) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("popen failed");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), out};
}

std::vector<uint8_t> idx_bytes(const std::vector<int>& dims, const std::vector<uint8_t>& values) {
  std::vector<uint8_t> b{0, 0, 8, static_cast<uint8_t>(dims.size())};
  for (int d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>((static_cast<uint32_t>(d) >> s) & 0xff));
  b.insert(b.end(), values.begin(), values.end());
  return b;
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void write_gzip(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
}

// Class c images: a bright c-th horizontal band, so a model can learn them.
void write_tiny_dataset(const std::string& dir, int n, bool gz) {
  for (const char* split : {"train", "t10k"}) {
    std::vector<uint8_t> img(size_t(n) * 784, 0), lab(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      int c = i % 10;
      lab[size_t(i)] = static_cast<uint8_t>(c);
      for (int y = c * 2; y < c * 2 + 4; ++y)
        for (int x = 4; x < 24; ++x) img[size_t(i) * 784 + size_t(y * 28 + x)] = static_cast<uint8_t>(200 + (i * 7 + x) % 50);
    }
    std::string ib = dir + "/" + split + "-images-idx3-ubyte", lb = dir + "/" + split + "-labels-idx1-ubyte";
    auto iv = idx_bytes({n, 28, 28}, img), lv = idx_bytes({n}, lab);
    if (gz) {
      write_gzip(ib + ".gz", iv);
      write_gzip(lb + ".gz", lv);
    } else {
      write_bytes(ib, iv);
      write_bytes(lb, lv);
    }
  }
}

void write_tiny_model(const std::string& dir, int n, bool bias, uint64_t seed) {
  write_tiny_dataset(dir, n, false);
  Dataset tr = load_split(dir, true), te = load_split(dir, false);
  Sequential m = build_model("lenet5", bias);
  m.init(seed);
  TrainConfig cfg;
  cfg.epochs = 2;
  cfg.batch = 16;
  Optimizer o(m, cfg.optim);
  train(m, o, tr, te, cfg);
  save_model(dir + "/m.st", m);
}

bool file_exists(const std::string& path) {
  struct stat st{};
  return stat(path.c_str(), &st) == 0;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool have_fashion_mnist() { return file_exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"); }

}  // namespace lowbit::test
