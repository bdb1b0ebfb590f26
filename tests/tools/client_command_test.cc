// gracectl as graced's client, against the real daemon process: every command, tables and JSON,
// the server's error shown as it is, and the documented exit codes.
#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "agent/local_cluster.h"
#include "tests/testing/child_process.h"
#include "tests/testing/run_command.h"
#include "tests/testing/test_certificate.h"

namespace grace {
namespace {

using nlohmann::json;

class ClientCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::temp_directory_path() / ("gracectl_client_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto http = PickFreePort();
    auto agents = PickFreePort();
    ASSERT_TRUE(http.ok() && agents.ok());
    port_ = *http;
    const std::string config = (dir_ / "graced.toml").string();
    std::ofstream(config) << "[daemon]\nhttp = \"127.0.0.1:" << port_
                          << "\"\nagents = \"127.0.0.1:" << *agents << "\"\nstate_dir = \""
                          << (dir_ / "state").string()
                          << "\"\n[model]\nnum_experts = 8\ntop_k = 2\nlayers = [0, 5]\n"
                          << "[topology]\nnodes = 2\ngpus_per_node = 2\nslots_per_gpu = 3\n";
    ASSERT_TRUE(graced_.Start({GRACED_BINARY, "--config", config},
                              {"GRACE_API_TOKEN=client-token", "GRACE_CLUSTER_SECRET=s"},
                              (dir_ / "graced.log").string()));
    httplib::Client c("127.0.0.1", port_);
    bool up = false;
    for (int i = 0; i < 300 && !up; ++i) {
      up = static_cast<bool>(c.Get("/healthz"));
      if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ASSERT_TRUE(up) << "graced did not come up";
  }
  void TearDown() override {
    graced_.Stop();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }
  testing::CommandRun Ctl(const std::string& args, const std::string& env = "") {
    return testing::RunCommand(env + " " GRACECTL_PATH " " + args +
                               " --server http://127.0.0.1:" + std::to_string(port_));
  }

  std::filesystem::path dir_;
  int port_ = 0;
  testing::ChildProcess graced_;
};

TEST_F(ClientCommandTest, EveryCommandAgainstARealGraced) {
  testing::CommandRun r = Ctl("status");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("epoch 1"), std::string::npos) << r.out;
  r = Ctl("status --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(json::parse(r.out)["layers"], json::array({0, 5}));

  r = Ctl("placement --layer 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const json p = json::parse(r.out);
  EXPECT_EQ(p["layers"], json::array({5}));
  EXPECT_EQ(p["physical_to_logical_map"].size(), 1u);
  EXPECT_EQ(p["physical_to_logical_map"][0].size(), 12u);
  r = Ctl("placement --epoch 1");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("GPU 3:"), std::string::npos) << r.out;
  r = Ctl("placement --epoch 9");
  EXPECT_EQ(r.exit_code, 1) << r.out;  // the server's 404, shown as it is
  EXPECT_NE(r.out.find("no epoch 9"), std::string::npos) << r.out;

  EXPECT_EQ(Ctl("agents").exit_code, 0);
  r = Ctl("history");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("epoch"), std::string::npos);
  EXPECT_EQ(Ctl("decisions --json").exit_code, 0);

  // Writes need the token; the server's validation message comes through as it is.
  r = Ctl("policy set interval_s=2");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("GRACE_API_TOKEN"), std::string::npos) << r.out;
  r = Ctl("policy set interval_s=2 planner=eplb", "GRACE_API_TOKEN=client-token");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  r = Ctl("policy get --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(json::parse(r.out)["interval_s"], 2.0);
  EXPECT_EQ(json::parse(r.out)["planner"], "eplb");
  r = Ctl("policy set interval_s=0 --token client-token");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("policy.interval_s: 0 is out of range"), std::string::npos) << r.out;
  r = Ctl("policy set --token wrong interval_s=3");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("401"), std::string::npos) << r.out;

  r = Ctl("pause --token client-token");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("paused: true"), std::string::npos) << r.out;
  EXPECT_EQ(Ctl("resume --token client-token").exit_code, 0);
  r = Ctl("replan --token client-token");
  EXPECT_EQ(r.exit_code, 0) << r.out;
}

TEST(ClientCommand, UnreachableIsThreeAndABadUrlTwo) {
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  testing::CommandRun r = testing::RunCommand(
      std::string(GRACECTL_PATH) + " status --server http://127.0.0.1:" + std::to_string(*port));
  EXPECT_EQ(r.exit_code, 3) << r.out;
  r = testing::RunCommand(std::string(GRACECTL_PATH) + " status --server ':not a url'");
  EXPECT_EQ(r.exit_code, 2) << r.out;
}

// gracectl against a graced that serves https:// only: the server's certificate is verified
// against the CA file given, and refused without it.
TEST(ClientCommand, HttpsServerIsVerifiedAgainstTheCaFile) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("gracectl_tls_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  testing::TestCertificates certs;
  ASSERT_TRUE(testing::MakeTestCertificates(dir, &certs));
  auto http = PickFreePort();
  auto agents = PickFreePort();
  ASSERT_TRUE(http.ok() && agents.ok());
  const std::string config = (dir / "graced.toml").string();
  std::ofstream(config) << "[daemon]\nhttp = \"127.0.0.1:" << *http
                        << "\"\nagents = \"127.0.0.1:" << *agents << "\"\nstate_dir = \""
                        << (dir / "state").string() << "\"\n[http]\ntls_cert_file = \""
                        << certs.cert_file << "\"\ntls_key_file = \"" << certs.key_file << "\"\n";
  testing::ChildProcess graced;
  ASSERT_TRUE(graced.Start({GRACED_BINARY, "--config", config},
                           {"GRACE_API_TOKEN=t", "GRACE_CLUSTER_SECRET=s"},
                           (dir / "graced.log").string()));
  const std::string https = " --server https://127.0.0.1:" + std::to_string(*http);
  const std::string gracectl = GRACECTL_PATH;
  const std::string ctl = gracectl + " status";
  testing::CommandRun r;
  for (int i = 0; i < 300; ++i) {
    r = testing::RunCommand(ctl + https + " --ca-file " + certs.ca_file);
    if (r.exit_code == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("epoch 1"), std::string::npos) << r.out;
  r = testing::RunCommand("GRACE_CA_FILE=" + certs.ca_file + " " + ctl + https);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  r = testing::RunCommand("GRACE_API_TOKEN=t " + gracectl + " pause" + https + " --ca-file " +
                          certs.ca_file);
  EXPECT_EQ(r.exit_code, 0) << r.out;

  // Not trusted without the authority; a missing CA file is a usage error naming it.
  r = testing::RunCommand(ctl + https);
  EXPECT_EQ(r.exit_code, 3) << r.out;
  EXPECT_NE(r.out.find("TLS certificate is not trusted"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--ca-file"), std::string::npos) << r.out;
  const std::string missing = (dir / "missing.pem").string();
  r = testing::RunCommand(ctl + https + " --ca-file " + missing);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("CA file " + missing + ": no such file"), std::string::npos) << r.out;
  // /healthz over TLS for a client that trusts the authority; plaintext gets no answer.
  httplib::Client verified("https://127.0.0.1:" + std::to_string(*http));
  verified.set_ca_cert_path(certs.ca_file);
  verified.enable_server_certificate_verification(true);
  auto healthz = verified.Get("/healthz");
  ASSERT_TRUE(healthz) << httplib::to_string(healthz.error());
  EXPECT_EQ(healthz->status, 200);
  httplib::Client plain("127.0.0.1", *http);
  plain.set_read_timeout(20, 0);
  EXPECT_FALSE(plain.Get("/healthz"));
  r = testing::RunCommand(ctl + " --server http://127.0.0.1:" + std::to_string(*http));
  EXPECT_EQ(r.exit_code, 3) << r.out;
  EXPECT_NE(r.out.find("https://"), std::string::npos) << r.out;
  graced.Stop();
  if (!::testing::Test::HasFailure()) std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace grace
