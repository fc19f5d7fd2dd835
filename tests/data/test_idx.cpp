// IDX reader on good, gzipped and broken files; dataset preprocessing; CLI errors on bad data.
#include <gtest/gtest.h>

#include "lowbit/data.h"
#include "test_util.h"

namespace lowbit {
namespace {

using test::TempDir;

TEST(Idx, ReadsRawAndGzip) {
  TempDir d;
  std::vector<uint8_t> vals{1, 2, 3, 4, 5, 6};
  test::write_bytes(d.file("a"), test::idx_bytes({2, 3}, vals));
  test::write_gzip(d.file("b"), test::idx_bytes({2, 3}, vals));
  for (const char* f : {"a", "b"}) {
    IdxArray a = read_idx(d.file(f));
    EXPECT_EQ(a.dims, (std::vector<int>{2, 3})) << f;
    EXPECT_EQ(a.data, vals) << f;
  }
}

void expect_error(const std::vector<uint8_t>& bytes, const std::string& fragment) {
  try {
    parse_idx(bytes.data(), bytes.size(), "bad.idx");
    FAIL() << "accepted a file that should fail with: " << fragment;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("bad.idx"), std::string::npos) << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
  }
}

TEST(Idx, RejectsBrokenFiles) {
  auto good = test::idx_bytes({2, 3}, {1, 2, 3, 4, 5, 6});
  expect_error({0, 0}, "too short");
  auto bad_magic = good;
  bad_magic[0] = 7;
  expect_error(bad_magic, "magic");
  auto bad_type = good;
  bad_type[2] = 0x0d;
  expect_error(bad_type, "element type");
  auto bad_rank = good;
  bad_rank[3] = 0;
  expect_error(bad_rank, "rank");
  expect_error(std::vector<uint8_t>(good.begin(), good.end() - 1), "truncated");
  expect_error(std::vector<uint8_t>(good.begin(), good.begin() + 9), "truncated");
  auto trailing = good;
  trailing.push_back(0);
  expect_error(trailing, "trailing");
  expect_error(test::idx_bytes({1 << 20, 1 << 20}, {}), "2 GiB");
}

TEST(Idx, RejectsTruncatedGzipAndTruncationAtEveryOffset) {
  TempDir d;
  auto good = test::idx_bytes({3, 4}, std::vector<uint8_t>(12, 9));
  test::write_gzip(d.file("g"), good);
  std::string gz = test::slurp(d.file("g"));
  test::write_bytes(d.file("t"), std::vector<uint8_t>(gz.begin(), gz.end() - 12));
  EXPECT_THROW(read_idx(d.file("t")), Error);
  for (size_t n = 0; n < good.size(); ++n) EXPECT_THROW(parse_idx(good.data(), n, "x"), Error) << n;
}

TEST(Idx, MissingFileAndFolder) {
  TempDir d;
  EXPECT_THROW(read_idx(d.file("nope")), Error);
  EXPECT_THROW(read_idx(d.path), Error);  // a directory
  EXPECT_THROW(load_split(d.file("nope"), true), Error);
  EXPECT_THROW(load_split(d.path, true), Error);  // folder without the files
}

TEST(Dataset, PreprocessAndValidate) {
  IdxArray img{{2, 28, 28}, std::vector<uint8_t>(2 * 784, 0)};
  img.data[0] = 255;                 // top-left pixel of image 0 -> (2, 2) after padding
  img.data[784 + 27 * 28 + 27] = 51;  // bottom-right pixel of image 1 -> (29, 29)
  IdxArray lab{{2}, {3, 9}};
  Dataset d = make_dataset(img, lab, "t");
  ASSERT_EQ(d.images.shape(), (Shape{2, 1, 32, 32}));
  EXPECT_FLOAT_EQ(d.images[0], -1.0f);             // padding is background
  EXPECT_FLOAT_EQ(d.images[2 * 32 + 2], 1.0f);      // 255 -> 1
  EXPECT_FLOAT_EQ(d.images[3 * 32 + 3], -1.0f);     // 0 -> -1
  EXPECT_NEAR(d.images[1024 + 29 * 32 + 29], 51.0f / 255 * 2 - 1, 1e-6);
  IdxArray bad_label{{2}, {3, 10}};
  EXPECT_THROW(make_dataset(img, bad_label, "t"), Error);
  IdxArray short_labels{{1}, {3}};
  EXPECT_THROW(make_dataset(img, short_labels, "t"), Error);
  IdxArray wrong_dims{{2, 27, 28}, std::vector<uint8_t>(2 * 27 * 28)};
  EXPECT_THROW(make_dataset(wrong_dims, lab, "t"), Error);
}

TEST(Dataset, TinyFolderLoadsPlainAndGz) {
  for (bool gz : {false, true}) {
    TempDir d;
    test::write_tiny_dataset(d.path, 30, gz);
    Dataset train = load_split(d.path, true);
    EXPECT_EQ(train.size(), 30);
    EXPECT_EQ(load_split(d.path, false, 10).size(), 10);
  }
}

}  // namespace
}  // namespace lowbit
