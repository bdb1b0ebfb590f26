// gracectl on inputs an unlucky operator or an attacker hands it: a FIFO without a writer,
// /dev/zero, a directory, an 8 GB sparse file, sizes that would not fit in memory. Each must
// end in a message and exit status 2: never an abort, a hang or gigabytes resident. A large
// JSONL trace is streamed: what it costs in memory does not grow with its text.
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "tests/testing/run_command.h"

namespace {

using grace::testing::CommandRun;

class GracectlHostileInput : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("grace_hostile_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // `timeout` turns a hang into exit status 124 (the bound is for a broken gracectl; nothing
  // here measures time). A memory limit turns reading a whole 8 GB file into a failure too.
  static CommandRun Gracectl(const std::string& args) {
    return grace::testing::RunCommand("ulimit -v 4000000; timeout 60 " +
                                      std::string(GRACECTL_PATH) + " " + args);
  }
  std::string Sparse(const std::string& name, const std::string& head, uint64_t size) {
    const std::string path = (dir_ / name).string();
    {
      std::ofstream f(path, std::ios::binary);
      f << head;
    }
    std::filesystem::resize_file(path, size);
    return path;
  }

  std::filesystem::path dir_;
};

TEST_F(GracectlHostileInput, NonRegularFilesAreRefusedWithoutBlocking) {
  const std::string fifo = (dir_ / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const std::string& path : {fifo, std::string("/dev/zero"), dir_.string()}) {
    CommandRun r = Gracectl("trace info " + path);
    EXPECT_EQ(r.exit_code, 2) << path << ": " << r.out;
    EXPECT_NE(r.out.find("not a regular file"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(path), std::string::npos) << r.out;  // the message names the file
  }
}

// A scenario file is read like a trace: a FIFO without a writer (which blocked gracectl for
// ever) and /dev/zero (read until memory ran out) are refused at once, naming the file.
TEST_F(GracectlHostileInput, AScenarioThatIsNotARegularFileIsRefused) {
  const std::string fifo = (dir_ / "scenario.toml").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string out = (dir_ / "t.trace").string();
  for (const std::string& path : {fifo, std::string("/dev/zero")}) {
    CommandRun r = Gracectl("trace from-scenario --scenario " + path + " -o " + out);
    EXPECT_EQ(r.exit_code, 2) << path << ": " << r.out;
    EXPECT_NE(r.out.find(path + ": not a regular file"), std::string::npos) << r.out;
  }
}

// A JSONL trace of 160 MB whose records carry a long field the import keeps once: streamed, the
// import adds far less than the file's size to gracectl's peak resident memory (read whole, it
// added the whole file and more). The peak is the children's, over a baseline run on a small file.
TEST_F(GracectlHostileInput, AJsonlTraceIsStreamedInBoundedMemory) {
  const std::string small = (dir_ / "small.jsonl").string();
  const std::string big = (dir_ / "big.jsonl").string();
  const std::string pad(4000, 'x');
  uint64_t size = 0;
  {
    std::ofstream s(small), b(big);
    for (int64_t i = 0; size < (160ull << 20); ++i) {
      const std::string line = "{\"problem_id\": " + std::to_string(i / 64) +
                               ", \"token_idx\": " + std::to_string(i % 64) +
                               ", \"layer\": 0, \"experts\": [1, 2], \"dataset\": \"" + pad +
                               "\"}\n";
      b << line;
      if (i < 1000) s << line;
      size += line.size();
    }
    ASSERT_TRUE(s && b);
  }
  auto peak_rss_mb = [] {
    rusage u{};
    ::getrusage(RUSAGE_CHILDREN, &u);
    return static_cast<double>(u.ru_maxrss) / 1024;  // ru_maxrss is in KiB on Linux
  };
  CommandRun r = Gracectl("trace info " + small);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const double baseline_mb = peak_rss_mb();
  r = Gracectl("trace info " + big);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("routing-jsonl"), std::string::npos) << r.out;
  EXPECT_LT(peak_rss_mb() - baseline_mb, 48) << "baseline " << baseline_mb << " MB";
}

TEST_F(GracectlHostileInput, AHugeFileIsRefusedFromItsSizeOrFirstBytes) {
  const uint64_t eight_gb = 8ull << 30;
  CommandRun r = Gracectl("trace info " + Sparse("zeros.bin", "", eight_gb));
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("not a trace grace knows"), std::string::npos) << r.out;
  r = Gracectl("trace info " + Sparse("huge.json", "{\"counts\": [", eight_gb));
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("over the"), std::string::npos) << r.out;
}

TEST_F(GracectlHostileInput, SizesThatCannotFitAreRefusedWithAMessage) {
  const std::string out = (dir_ / "t.trace").string();
  CommandRun r = Gracectl("trace synth -o " + out + " --steps 2000000000 --tokens-per-step 100000");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("expert choices"), std::string::npos) << r.out;
  r = Gracectl("trace synth -o " + out + " --steps 4 --phases 1");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  r = Gracectl("plan --trace " + out +
               " --nodes 100000 --gpus-per-node 100000 --slots-per-gpu 100000");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("slots, over the"), std::string::npos) << r.out;
}

}  // namespace
