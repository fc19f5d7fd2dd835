// Tests for write_file_atomic and read_file: round trips, clear errors, and the atomicity promise
// (a failed write leaves the previous file intact and no temporary file behind).
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "lowbit/io.h"

namespace {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents at the end of the test.
struct TempDir {
  std::string path;
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/lowbit_io_test_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path = buf.data();
  }
  ~TempDir() {
    ::chmod(path.c_str(), 0700);
    std::string cmd = "rm -rf '" + path + "'";
    if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", path.c_str());
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string pattern_bytes(size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131u + seed * 7u) & 0xffu);
  return s;
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const lowbit::Error& e) {
    return e.what();
  }
  return "<no lowbit::Error thrown>";
}

}  // namespace

TEST(IoFile, WriteThenReadRoundTrip) {
  TempDir d;
  const std::string p = d.file("a.bin");
  for (size_t n : {size_t{0}, size_t{1}, size_t{4095}, size_t{70000}}) {
    std::string bytes = pattern_bytes(n, static_cast<unsigned>(n));
    lowbit::write_file_atomic(p, bytes.data(), bytes.size());
    std::string got = lowbit::read_file(p);
    ASSERT_EQ(got.size(), n) << "size " << n;
    EXPECT_TRUE(got == bytes) << "content differs for size " << n;
  }
  // Only the final file remains: no temporary files.
  EXPECT_EQ(list_dir(d.path), std::vector<std::string>{"a.bin"});
}

TEST(IoFile, OverwriteReplacesWholeContent) {
  TempDir d;
  const std::string p = d.file("a.bin");
  lowbit::write_file_atomic(p, pattern_bytes(10000, 1));
  lowbit::write_file_atomic(p, std::string("short"));
  EXPECT_EQ(lowbit::read_file(p), "short");
}

TEST(IoFile, ReadMissingNamesPath) {
  TempDir d;
  const std::string p = d.file("nope.bin");
  std::string msg = error_of([&] { lowbit::read_file(p); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("no such file"), std::string::npos) << msg;
}

TEST(IoFile, ReadDirectoryNamesPath) {
  TempDir d;
  std::string msg = error_of([&] { lowbit::read_file(d.path); });
  EXPECT_NE(msg.find(d.path), std::string::npos) << msg;
  EXPECT_NE(msg.find("is a directory"), std::string::npos) << msg;
}

TEST(IoFile, ReadUnreadableNamesPath) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: permission bits do not stop reads";
  TempDir d;
  const std::string p = d.file("secret.bin");
  lowbit::write_file_atomic(p, std::string("x"));
  ASSERT_EQ(::chmod(p.c_str(), 0), 0);
  std::string msg = error_of([&] { lowbit::read_file(p); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("Permission denied"), std::string::npos) << msg;
}

TEST(IoFile, WriteIntoMissingDirectoryFails) {
  TempDir d;
  const std::string p = d.file("no_such_dir/a.bin");
  std::string msg = error_of([&] { lowbit::write_file_atomic(p, std::string("x")); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
  EXPECT_TRUE(list_dir(d.path).empty());
}

TEST(IoFile, RenameOverDirectoryFailsAndCleansUp) {
  // The final name is an existing non-empty directory: rename fails after the temp file was fully
  // written; the temp file must be removed and the directory left alone.
  TempDir d;
  const std::string p = d.file("target");
  ASSERT_EQ(::mkdir(p.c_str(), 0700), 0);
  lowbit::write_file_atomic(p + "/keep", std::string("inside"));
  std::string msg = error_of([&] { lowbit::write_file_atomic(p, pattern_bytes(1000, 3)); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("rename"), std::string::npos) << msg;
  EXPECT_EQ(list_dir(d.path), std::vector<std::string>{"target"});
  EXPECT_EQ(lowbit::read_file(p + "/keep"), "inside");
}

TEST(IoFile, FailedWriteMidwayKeepsPreviousFile) {
  // Make write() fail part way with EFBIG by lowering RLIMIT_FSIZE below the new content's size.
  // This is a real mid-write failure (works as root too, unlike permission bits).
  TempDir d;
  const std::string p = d.file("model.bin");
  const std::string old_bytes = pattern_bytes(3000, 5);
  lowbit::write_file_atomic(p, old_bytes);

  struct rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  struct sigaction ign = {}, old_action = {};
  ign.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGXFSZ, &ign, &old_action), 0);
  struct rlimit low = saved;
  low.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &low), 0);
  std::string msg = error_of([&] { lowbit::write_file_atomic(p, pattern_bytes(100000, 6)); });
  ::setrlimit(RLIMIT_FSIZE, &saved);
  ::sigaction(SIGXFSZ, &old_action, nullptr);

  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("write failed"), std::string::npos) << msg;
  EXPECT_TRUE(lowbit::read_file(p) == old_bytes) << "previous file was modified";
  EXPECT_EQ(list_dir(d.path), std::vector<std::string>{"model.bin"}) << "a temporary file was left behind";
}

TEST(IoFile, UnwritableDirectoryKeepsPreviousFile) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: permission bits do not stop writes";
  TempDir d;
  const std::string p = d.file("model.bin");
  lowbit::write_file_atomic(p, std::string("old"));
  ASSERT_EQ(::chmod(d.path.c_str(), 0500), 0);
  std::string msg = error_of([&] { lowbit::write_file_atomic(p, std::string("new content")); });
  ::chmod(d.path.c_str(), 0700);
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_EQ(lowbit::read_file(p), "old");
  EXPECT_EQ(list_dir(d.path), std::vector<std::string>{"model.bin"});
}

TEST(IoFile, ConcurrentWritersNeverExposePartialFile) {
  // Several threads rewrite the same path with different full contents while a reader polls:
  // every read must see one complete version.
  TempDir d;
  const std::string p = d.file("shared.bin");
  const size_t n = 20000;
  lowbit::write_file_atomic(p, std::string(n, 'a'));
  std::vector<std::thread> writers;
  for (int t = 0; t < 3; ++t)
    writers.emplace_back([&, t] {
      for (int i = 0; i < 4; ++i) lowbit::write_file_atomic(p, std::string(n, static_cast<char>('b' + t)));
    });
  int bad = 0;
  for (int i = 0; i < 50; ++i) {
    std::string got = lowbit::read_file(p);
    bool ok = got.size() == n && got.find_first_not_of(got[0]) == std::string::npos;
    if (!ok) ++bad;
  }
  for (auto& w : writers) w.join();
  EXPECT_EQ(bad, 0) << "reads saw a partial or mixed file";
  EXPECT_EQ(list_dir(d.path), std::vector<std::string>{"shared.bin"});
}
