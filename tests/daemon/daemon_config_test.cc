#include "daemon/daemon_config.h"

#include <gtest/gtest.h>

namespace grace {
namespace {

TEST(DaemonConfigTest, DefaultsWorkOnALaptop) {
  auto c = ParseDaemonConfig("", "graced.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->http_host, "127.0.0.1");
  EXPECT_GE(c->topology.total_slots(), c->model.num_experts);
}

TEST(DaemonConfigTest, ParsesEveryTable) {
  auto c = ParseDaemonConfig(R"(
[daemon]
http = "127.0.0.1:9000"
agents = "0.0.0.0:9001"
state_dir = "/tmp/g"
[agents]
heartbeat_ms = 100
lost_after_ms = 1000
ready_timeout_ms = 4000
[topology]
nodes = 2
gpus_per_node = 4
slots_per_gpu = 8
[model]
num_experts = 60
top_k = 4
layers = [0, 8, 12]
[policy]
cooldown_s = 7
forecast_model = "holt"
)",
                             "graced.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->http_port, 9000);
  EXPECT_EQ(c->agents_host, "0.0.0.0");
  EXPECT_EQ(c->model.layer_ids, (std::vector<LayerId>{0, 8, 12}));
  EXPECT_EQ(c->ready_timeout_ms, 4000u);
  EXPECT_EQ(c->switch_timeout_ms, 30000u);  // the default
  EXPECT_EQ(c->policy.cooldown_s, 7);
  EXPECT_EQ(c->policy.forecast_model, "holt");
  EXPECT_EQ(c->topology.ranks(), 8);
}

TEST(DaemonConfigTest, PlannerAndInitialPlacement) {
  auto c = ParseDaemonConfig(
      "[daemon]\ninitial_placement = \"/tmp/p.json\"\n[policy]\nplanner = \"eplb\"\n",
      "graced.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->initial_placement, "/tmp/p.json");
  EXPECT_EQ(c->policy.planner, "eplb");
  EXPECT_EQ(ParseDaemonConfig("", "graced.toml")->policy.planner, "grace");
  auto bad = ParseDaemonConfig("[policy]\nplanner = \"random\"\n", "graced.toml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("policy.planner"), std::string::npos)
      << bad.status().ToString();
}

TEST(DaemonConfigTest, UnknownKeysAndTablesAreNamed) {
  auto c = ParseDaemonConfig("[daemon]\nhttp_port = 1\n", "g.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("[daemon].http_port"), std::string::npos);
  c = ParseDaemonConfig("[deamon]\nhttp = \"a:1\"\n", "g.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("unknown table [deamon]"), std::string::npos);
  c = ParseDaemonConfig("[policy]\ncooldown_s = -1\n", "g.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("policy.cooldown_s"), std::string::npos);
}

TEST(DaemonConfigTest, NegativeOrRepeatedLayerIdsAreNamed) {
  auto negative = ParseDaemonConfig("[model]\nlayers = [0, -3]\n", "g.toml");
  ASSERT_FALSE(negative.ok());
  EXPECT_NE(negative.status().message().find("layer id -3 is out of range"), std::string::npos)
      << negative.status().message();
  auto twice = ParseDaemonConfig("[model]\nlayers = [4, 4]\n", "g.toml");
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.status().message().find("layer id 4 is listed twice"), std::string::npos);
}

TEST(DaemonConfigTest, BadAddressesAndShapesAreNamed) {
  auto c = ParseDaemonConfig("[daemon]\nhttp = \"localhost\"\n", "g.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("expected HOST:PORT"), std::string::npos);
  c = ParseDaemonConfig("[topology]\nnodes = 1\ngpus_per_node = 1\nslots_per_gpu = 4\n", "g.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("4 slots for 64 experts"), std::string::npos);
}

TEST(DaemonConfigTest, OffLoopbackTheRestApiNeedsTlsOrAllowPlaintext) {
  auto c = ParseDaemonConfig("", "g.toml");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(CheckHttpTransport(*c).ok());  // the laptop default: plaintext on loopback
  for (const char* host : {"127.0.0.1", "127.8.0.1", "localhost", "::1", "[::1]"}) {
    c->http_host = host;
    EXPECT_TRUE(CheckHttpTransport(*c).ok()) << host;
  }
  for (const char* host : {"0.0.0.0", "10.1.2.3", "::", "grace.example.com"}) {
    c->http_host = host;
    Status refused = CheckHttpTransport(*c);
    ASSERT_FALSE(refused.ok()) << host;
    EXPECT_NE(refused.message().find("[http].tls_cert_file"), std::string::npos)
        << refused.message();
    EXPECT_NE(refused.message().find("allow_plaintext"), std::string::npos);
  }

  auto plain = ParseDaemonConfig(
      "[daemon]\nhttp = \"0.0.0.0:8750\"\n[http]\nallow_plaintext = true\n", "g.toml");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_TRUE(plain->http_allow_plaintext);
  EXPECT_TRUE(CheckHttpTransport(*plain).ok());

  auto tls = ParseDaemonConfig(
      "[daemon]\nhttp = \"0.0.0.0:8750\"\n[http]\ntls_cert_file = \"/etc/grace/c.pem\"\n"
      "tls_key_file = \"/etc/grace/k.pem\"\n",
      "g.toml");
  ASSERT_TRUE(tls.ok()) << tls.status().ToString();
  EXPECT_EQ(tls->http_tls_cert_file, "/etc/grace/c.pem");
  EXPECT_EQ(tls->http_tls_key_file, "/etc/grace/k.pem");
  EXPECT_TRUE(CheckHttpTransport(*tls).ok());
  tls->http_tls_key_file.clear();
  Status half = CheckHttpTransport(*tls);
  ASSERT_FALSE(half.ok());
  EXPECT_NE(half.message().find("[http].tls_key_file"), std::string::npos) << half.message();

  auto unknown = ParseDaemonConfig("[http]\ntls_cert = \"c.pem\"\n", "g.toml");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("[http].tls_cert"), std::string::npos);
}

}  // namespace
}  // namespace grace
