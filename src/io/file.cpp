// Whole-file read and atomic whole-file write (POSIX). See include/lowbit/io.h.
// Not here: any file format; safetensors lives in safetensors.cpp.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "lowbit/io.h"

namespace lowbit {

static std::string sys_reason(int err) { return std::strerror(err); }

static std::string dir_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Write all n bytes, retrying short writes and EINTR. Returns 0 or an errno value.
static int write_all(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (w == 0) return EIO;  // no progress: treat as an I/O error rather than loop forever
    p += w;
    n -= static_cast<size_t>(w);
  }
  return 0;
}

void write_file_atomic(const std::string& path, const void* data, size_t n) {
  if (path.empty()) throw Error("write_file_atomic: empty path");
  // pid + a process-wide counter: unique among processes and among threads of this process.
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);

  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) {
    int err = errno;
    throw Error(path + ": cannot create temporary file " + tmp + ": " + sys_reason(err));
  }
  // From here on, every failure removes tmp before throwing.
  auto fail = [&](const std::string& what, int err) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw Error(path + ": " + what + ": " + sys_reason(err));
  };
  if (int err = write_all(fd, static_cast<const uint8_t*>(data), n)) fail("write failed", err);
  if (::fsync(fd) != 0) fail("fsync failed", errno);
  int rc = ::close(fd);
  fd = -1;
  if (rc != 0) fail("close failed", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot rename " + tmp + " over it", errno);

  // Make the rename itself durable. Some filesystems cannot fsync a directory (EINVAL); the data
  // is in place by then, so only a real I/O error is reported.
  const std::string dir = dir_of(path);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    int drc = ::fsync(dfd);
    int err = errno;
    ::close(dfd);
    if (drc != 0 && err != EINVAL && err != ENOTSUP)
      throw Error(path + ": written, but fsync of directory " + dir + " failed: " + sys_reason(err));
  }
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_file_atomic(path, bytes.data(), bytes.size());
}

std::string read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) throw Error(path + ": no such file");
    throw Error(path + ": cannot open: " + sys_reason(err));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw Error(path + ": cannot stat: " + sys_reason(err));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": is a directory, not a file");
  }
  std::string out;
  // st_size is only a hint (the file may change, or be a pipe): read until EOF in any case.
  if (S_ISREG(st.st_mode) && st.st_size > 0) out.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      throw Error(path + ": read failed after " + std::to_string(out.size()) + " bytes: " + sys_reason(err));
    }
    if (r == 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  ::close(fd);
  return out;
}

}  // namespace lowbit
