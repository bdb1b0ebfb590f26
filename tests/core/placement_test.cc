#include "core/placement.h"

#include <gtest/gtest.h>

namespace grace {
namespace {

Topology TwoByTwo(int slots) {
  Topology t;
  t.nodes = 2;
  t.gpus_per_node = 2;
  t.slots_per_gpu = slots;
  return t;
}

TEST(PlacementTest, ValidPlacementPasses) {
  Placement p;
  p.num_experts = 4;
  p.layer_ids = {3};
  p.physical_to_logical = {{0, 1, 2, 3, 0, -1, 1, 2}};
  EXPECT_TRUE(p.Validate(TwoByTwo(2)).ok());
  EXPECT_EQ(p.ReplicaCounts(0), (std::vector<int>{2, 2, 2, 1}));
  EXPECT_EQ(p.SlotsOf(0, 2), (std::vector<SlotId>{2, 7}));
}

TEST(PlacementTest, ExpertWithoutReplicaIsNamed) {
  Placement p;
  p.num_experts = 5;
  p.layer_ids = {7};
  p.physical_to_logical = {{0, 1, 2, 3, 0, -1, 1, 2}};
  Status s = p.Validate(TwoByTwo(2));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("layer 7: expert 4 has no replica"), std::string::npos) << s.message();
}

TEST(PlacementTest, SlotCountNotDividingRanksIsNamed) {
  Placement p;
  p.num_experts = 2;
  p.layer_ids = {0};
  p.physical_to_logical = {{0, 1, 0, 1, 0, 1}};
  Status s = p.Validate(TwoByTwo(2));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("do not divide by 4 ranks"), std::string::npos) << s.message();
}

TEST(PlacementTest, OutOfRangeExpertIsNamed) {
  Placement p;
  p.num_experts = 4;
  p.layer_ids = {0};
  p.physical_to_logical = {{0, 1, 2, 3, 9, -1, 1, 2}};
  Status s = p.Validate(TwoByTwo(2));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("slot 4: expert 9"), std::string::npos) << s.message();
}

TEST(PlacementTest, JsonRoundTripKeepsSglangKey) {
  Placement p;
  p.num_experts = 4;
  p.layer_ids = {3, 4};
  p.physical_to_logical = {{0, 1, 2, 3, 0, -1, 1, 2}, {3, 2, 1, 0, 3, 2, 1, 0}};
  std::string json = PlacementToJson(p, TwoByTwo(2));
  EXPECT_NE(json.find("\"physical_to_logical_map\""), std::string::npos);
  Topology t;
  auto back = PlacementFromJson(json, "p.json", &t);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, p);
  EXPECT_EQ(t.slots_per_gpu, 2);
}

TEST(PlacementTest, RaggedJsonIsRejectedWithRow) {
  auto back = PlacementFromJson(R"({"physical_to_logical_map": [[0,1],[0]]})", "p.json");
  ASSERT_FALSE(back.ok());
  EXPECT_NE(back.status().message().find("row 1"), std::string::npos);
}

}  // namespace
}  // namespace grace
