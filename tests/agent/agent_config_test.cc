// agent.toml parsing and model loading: bad configs stop with the key or tensor named.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "agent/agent_config.h"
#include "agent/replay.h"
#include "agent/safetensors.h"
#include "agent/weights_file.h"

namespace grace {
namespace {

constexpr const char* kMinimal = R"(
[cluster]
nodes = 2
ranks_per_node = 2
slots_per_rank = 3
[model]
experts = 8
top_k = 2
hidden = 16
ffn = 8
layers = 2
)";

TEST(AgentConfigTest, ExampleConfigParses) {
  auto c = LoadAgentConfig(std::string(GRACE_SOURCE_DIR) + "/config/agent.example.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->topology.ranks(), 4);
  EXPECT_EQ(c->rendezvous_port, 29500);
}

TEST(AgentConfigTest, MinimalConfigGetsDefaults) {
  auto c = ParseAgentConfig(kMinimal, "agent.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->model.num_experts, 8);
  EXPECT_EQ(c->local_ranks, 1);
  EXPECT_EQ(c->backend, "cpu");
  EXPECT_EQ(c->transport, "tcp");
  EXPECT_EQ(c->coactivation_sample_every, 8);
  EXPECT_EQ(c->coactivation_max_pairs, 512);
}

TEST(AgentConfigTest, NcclTransportNeedsTheCudaBackend) {
  auto nccl = ParseAgentConfig(
      std::string(kMinimal) +
          "[agent]\nbackend = \"cuda\"\n[transport]\nkind = \"nccl\"\nnccl_timeout_ms = 5000\n",
      "agent.toml");
  ASSERT_TRUE(nccl.ok()) << nccl.status().ToString();
  EXPECT_EQ(nccl->transport, "nccl");
  EXPECT_EQ(nccl->nccl_timeout_ms, 5000);
  EXPECT_EQ(ParseAgentConfig(kMinimal, "agent.toml")->nccl_timeout_ms, 60000);
  auto cpu =
      ParseAgentConfig(std::string(kMinimal) + "[transport]\nkind = \"nccl\"\n", "agent.toml");
  ASSERT_FALSE(cpu.ok());
  EXPECT_NE(cpu.status().message().find("backend = \"cuda\""), std::string::npos)
      << cpu.status().ToString();
  auto other =
      ParseAgentConfig(std::string(kMinimal) + "[transport]\nkind = \"rdma\"\n", "agent.toml");
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().message().find("[transport].kind"), std::string::npos)
      << other.status().ToString();
}

TEST(AgentConfigTest, CoactivationMaxPairsIsBoundedByTheWire) {
  auto c = ParseAgentConfig(std::string(kMinimal) + "[replay]\ncoactivation_max_pairs = 64\n",
                            "agent.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->coactivation_max_pairs, 64);
  auto over = ParseAgentConfig(std::string(kMinimal) + "[replay]\ncoactivation_max_pairs = 5000\n",
                               "agent.toml");
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.status().message().find("coactivation_max_pairs"), std::string::npos)
      << over.status().ToString();
}

TEST(AgentConfigTest, UnknownKeysAreNamed) {
  auto c = ParseAgentConfig(std::string(kMinimal) + "hiden = 3\n", "agent.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("[model].hiden"), std::string::npos) << c.status().ToString();
  auto d = ParseAgentConfig(std::string(kMinimal) + "[replays]\nsteps = 1\n", "agent.toml");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("replays"), std::string::npos) << d.status().ToString();
  auto e = ParseAgentConfig(std::string(kMinimal) + "[transport]\nrendezvous = \"nohost\"\n",
                            "agent.toml");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("[transport].rendezvous"), std::string::npos);
}

TEST(AgentConfigTest, NcclMigrationTransportNeedsTheCudaBackend) {
  EXPECT_EQ(ParseAgentConfig(kMinimal, "agent.toml")->migration_transport, "tcp");
  // Device to device on the CUDA backend, independent of the data path's [transport].kind.
  auto cuda = ParseAgentConfig(
      std::string(kMinimal) + "[agent]\nbackend = \"cuda\"\n[migration]\ntransport = \"nccl\"\n",
      "agent.toml");
  ASSERT_TRUE(cuda.ok()) << cuda.status().ToString();
  EXPECT_EQ(cuda->migration_transport, "nccl");
  EXPECT_EQ(cuda->transport, "tcp");
  auto cpu =
      ParseAgentConfig(std::string(kMinimal) + "[migration]\ntransport = \"nccl\"\n", "agent.toml");
  ASSERT_FALSE(cpu.ok());
  EXPECT_EQ(cpu.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(cpu.status().message().find("agent.toml"), std::string::npos)
      << cpu.status().ToString();
  EXPECT_NE(cpu.status().message().find("[migration].transport"), std::string::npos)
      << cpu.status().ToString();
  EXPECT_NE(cpu.status().message().find("backend = \"cuda\""), std::string::npos)
      << cpu.status().ToString();
  auto other = ParseAgentConfig(std::string(kMinimal) +
                                    "[agent]\nbackend = \"cuda\"\n"
                                    "[migration]\ntransport = \"rdma\"\n",
                                "agent.toml");
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().message().find("[migration].transport"), std::string::npos)
      << other.status().ToString();
  EXPECT_NE(other.status().message().find("\"rdma\""), std::string::npos)
      << other.status().ToString();
}

TEST(AgentConfigTest, DaemonAndMigrationTables) {
  auto c = ParseAgentConfig(std::string(kMinimal) +
                                "[daemon]\naddress = \"10.0.0.1:8751\"\ncluster_secret = \"s\"\n"
                                "[migration]\nrendezvous = \"10.0.0.2:29700\"\n"
                                "max_bytes_per_s = 1e6\n",
                            "agent.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->daemon_address, "10.0.0.1:8751");
  EXPECT_EQ(c->cluster_secret, "s");
  EXPECT_EQ(c->agent_id, "agent0");
  EXPECT_EQ(c->migration_rendezvous_host, "10.0.0.2");
  EXPECT_EQ(c->migration_rendezvous_port, 29700);
  EXPECT_EQ(c->max_bytes_per_s, 1e6);
  EXPECT_EQ(c->step_budget, 1.25);
  EXPECT_EQ(c->spare_slots, 3);  // default: slots_per_rank, any migration stages at once
  auto one = ParseAgentConfig(std::string(kMinimal) + "[migration]\nspare_slots = 1\n", "a.toml");
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ(one->spare_slots, 1);
  EXPECT_FALSE(
      ParseAgentConfig(std::string(kMinimal) + "[migration]\nspare_slots = -1\n", "a.toml").ok());
  auto bad =
      ParseAgentConfig(std::string(kMinimal) + "[daemon]\naddress = \"nohost\"\n", "agent.toml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("[daemon].address"), std::string::npos)
      << bad.status().ToString();
}

TEST(AgentConfigTest, TopKAboveExpertsIsRefused) {
  std::string text = kMinimal;
  text.replace(text.find("top_k = 2"), 9, "top_k = 9");
  auto c = ParseAgentConfig(text, "agent.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("top_k"), std::string::npos);
}

TEST(WeightsFileTest, RoundTripsThroughSafetensors) {
  const auto dir = std::filesystem::temp_directory_path() / "grace_weights_test";
  std::filesystem::create_directories(dir);
  ModelShape s{.num_experts = 4, .top_k = 2, .hidden = 6, .ffn = 3, .num_layers = 2};
  ExpertWeights w = GenerateExpertWeights(s, 17);
  const std::string path = (dir / "experts.safetensors").string();
  ASSERT_TRUE(WriteExpertWeightsFile(path, w, {3, 5}).ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->tensors().size(), 2u * (1 + 4 * 3));
  EXPECT_EQ(file->tensors().at("model.layers.5.mlp.experts.3.down_proj.weight").shape,
            (std::vector<int64_t>{6, 3}));
  auto back = LoadExpertWeightsFile(path, s, {3, 5});
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->w1, w.w1);
  EXPECT_EQ(back->w2, w.w2);
  EXPECT_EQ(back->gate, w.gate);

  // A model config whose ffn does not match the file names the first tensor that disagrees.
  ModelShape wrong = s;
  wrong.ffn = 4;
  auto bad = LoadExpertWeightsFile(path, wrong, {3, 5});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("model.layers.3.mlp.experts.0.gate_proj.weight"),
            std::string::npos)
      << bad.status().ToString();
  EXPECT_NE(bad.status().message().find("[3, 6]"), std::string::npos);
  // Layer ids the file does not have.
  auto missing = LoadExpertWeightsFile(path, s, {3, 4});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("model.layers.4.mlp.gate.weight"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(SafetensorsTest, ReadsHalfPrecisionAndRejectsCorruptHeaders) {
  // Hand-built file: one BF16 tensor [2] = {1.0, -2.0} and one F16 [1] = {0.5}.
  std::string header =
      R"({"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"F16","shape":[1],"data_offsets":[4,6]}})";
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  bytes += header;
  const unsigned char data[] = {0x80, 0x3f, 0x00, 0xc0, 0x00, 0x38};
  bytes.append(reinterpret_cast<const char*>(data), sizeof data);
  auto f = SafetensorsFile::FromBytes(bytes, "mem");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  std::vector<float> v;
  ASSERT_TRUE(f->ReadFloat32("a", {2}, &v).ok());
  EXPECT_EQ(v, (std::vector<float>{1.0f, -2.0f}));
  ASSERT_TRUE(f->ReadFloat32("b", {1}, &v).ok());
  EXPECT_EQ(v[0], 0.5f);
  auto truncated = SafetensorsFile::FromBytes(bytes.substr(0, bytes.size() - 3), "mem");
  ASSERT_FALSE(truncated.ok());
  EXPECT_NE(truncated.status().message().find("outside the 3-byte data section"), std::string::npos)
      << truncated.status().ToString();
}

}  // namespace
}  // namespace grace
