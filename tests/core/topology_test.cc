#include "core/topology.h"

#include <gtest/gtest.h>

namespace grace {
namespace {

TEST(TopologyTest, ParsesTableAndDefaults) {
  auto t = ParseTopologyToml(
      "[topology]\nnodes = 2\ngpus_per_node = 4\nslots_per_gpu = 9\n"
      "inter_node_gbps = 400\n",
      "t.toml");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->ranks(), 8);
  EXPECT_EQ(t->total_slots(), 72);
  EXPECT_EQ(t->NodeOfRank(5), 1);
  EXPECT_EQ(t->RankOfSlot(17), 1);
  EXPECT_DOUBLE_EQ(t->inter_node_bytes_per_s(), 50e9);
  EXPECT_DOUBLE_EQ(t->intra_node_gbps, 1200.0);
}

TEST(TopologyTest, UnknownKeyIsNamedWithLine) {
  auto t = ParseTopologyToml(
      "[topology]\nnodes = 2\ngpus_per_node = 4\nslots_per_gpu = 9\nnode = 3\n", "t.toml");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("[topology].node"), std::string::npos)
      << t.status().message();
  EXPECT_NE(t.status().message().find("line 5"), std::string::npos) << t.status().message();
}

TEST(TopologyTest, OutOfRangeValueIsNamed) {
  auto t =
      ParseTopologyToml("[topology]\nnodes = 0\ngpus_per_node = 4\nslots_per_gpu = 9\n", "t.toml");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("nodes"), std::string::npos);
  EXPECT_NE(t.status().message().find("out of range"), std::string::npos);
}

TEST(TopologyTest, SyntaxErrorNamesLine) {
  auto t = ParseTopologyToml("[topology]\nnodes = = 2\n", "bad.toml");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("bad.toml:2"), std::string::npos) << t.status().message();
}

}  // namespace
}  // namespace grace

namespace grace {
namespace {

TEST(TopologyJson, RoundTripsAndKeepsTheBaseForAbsentFields) {
  Topology t;
  t.nodes = 3;
  t.gpus_per_node = 4;
  t.slots_per_gpu = 5;
  t.inter_node_gbps = 400;
  t.intra_node_latency_us = 2;
  const Topology back = TopologyFromJson(TopologyToJson(t));
  EXPECT_EQ(back.nodes, 3);
  EXPECT_EQ(back.slots_per_gpu, 5);
  EXPECT_EQ(back.inter_node_gbps, 400);
  EXPECT_EQ(back.intra_node_latency_us, 2);
  const Topology partial = TopologyFromJson({{"nodes", 2}}, t);
  EXPECT_EQ(partial.nodes, 2);
  EXPECT_EQ(partial.gpus_per_node, 4);
  EXPECT_EQ(partial.inter_node_gbps, 400);
  EXPECT_EQ(TopologyFromJson("not an object", t).nodes, 3);
}

}  // namespace
}  // namespace grace
