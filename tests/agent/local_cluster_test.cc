// Processes started for the multi-process tests inherit no socket of their parent's: a
// connection left open in a child outlives the parent's close, and its peer never learns that
// it was closed (an agent that would wait on a dead daemon connection for ever).
#include "agent/local_cluster.h"

#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/testing/child_process.h"

namespace grace {
namespace {

// A script that writes where each of its open descriptors points, one per line, to `out`.
std::string ListDescriptorsCommand(const std::string& out) {
  return "for f in /proc/$$/fd/*; do readlink \"$f\" || :; done > '" + out + "'";
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

class ChildDescriptorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::temp_directory_path() / ("grace_child_fds_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    // Without SOCK_CLOEXEC, as an accept() of a proxy's would be.
    socket_ = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(socket_, 0);
  }
  void TearDown() override {
    ::close(socket_);
    std::filesystem::remove_all(dir_);
  }
  std::filesystem::path dir_;
  int socket_ = -1;
};

TEST_F(ChildDescriptorsTest, ChildProcessInheritsNoSocket) {
  const std::string out = (dir_ / "fds").string();
  testing::ChildProcess child;
  ASSERT_TRUE(
      child.Start({"/bin/sh", "-c", ListDescriptorsCommand(out)}, {}, (dir_ / "log").string()));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (child.Running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_FALSE(child.Running()) << "the shell did not exit in 10 s";
  const std::string fds = ReadFile(out);
  EXPECT_FALSE(fds.empty());
  EXPECT_EQ(fds.find("socket:"), std::string::npos) << fds;
}

TEST_F(ChildDescriptorsTest, StartAgentProcessInheritsNoSocket) {
  // Started as `<script> --config <path>`, as grace-agent is.
  const std::string script = (dir_ / "agent.sh").string();
  {
    std::ofstream f(script);
    f << "#!/bin/sh\n" << ListDescriptorsCommand((dir_ / "fds").string()) << "\n";
  }
  std::filesystem::permissions(script, std::filesystem::perms::owner_all);
  StatusOr<int> pid = StartAgentProcess(script, (dir_ / "agent.toml").string());
  ASSERT_TRUE(pid.ok()) << pid.status().ToString();
  StatusOr<int> code = WaitAgentProcess(*pid, std::chrono::seconds(10));
  ASSERT_TRUE(code.ok()) << code.status().ToString();
  EXPECT_EQ(*code, 0);
  const std::string fds = ReadFile((dir_ / "fds").string());
  EXPECT_FALSE(fds.empty());
  EXPECT_EQ(fds.find("socket:"), std::string::npos) << fds;
}

}  // namespace
}  // namespace grace
