#include "core/placement_export.h"

#include <algorithm>
#include <map>
#include <sstream>

#include <gtest/gtest.h>

namespace grace {
namespace {

using Rows = std::vector<std::vector<int>>;

// The example of vLLM's EplbState docstring: 2 MoE layers, 4 experts, 6 slots on 3 ranks, here as
// the model's layers 3 and 4 (layers 0..2 dense).
Placement TwoLayers() {
  Placement p;
  p.num_experts = 4;
  p.layer_ids = {3, 4};
  p.physical_to_logical = {{0, 1, 2, 3, 0, 1}, {0, 2, 0, 1, 0, 3}};
  return p;
}

TEST(PlacementExportTest, SglangHasOneRowPerModelLayerAndOnlyItsKey) {
  StatusOr<nlohmann::json> j = ToSglangExpertLocation(TwoLayers());
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  ASSERT_EQ(j->size(), 1u);  // SGLang passes every key to init_by_mapping as an argument
  const Rows rows = (*j)["physical_to_logical_map"].get<Rows>();
  const std::vector<int> trivial = {0, 1, 2, 3, 0, 1};  // slot p holds p % 4
  EXPECT_EQ(rows, (Rows{trivial, trivial, trivial, {0, 1, 2, 3, 0, 1}, {0, 2, 0, 1, 0, 3}}));

  j = ToSglangExpertLocation(TwoLayers(), 7);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  const Rows seven = (*j)["physical_to_logical_map"].get<Rows>();
  ASSERT_EQ(seven.size(), 7u);
  EXPECT_EQ(seven[4], (std::vector<int>{0, 2, 0, 1, 0, 3}));
  EXPECT_EQ(seven[6], trivial);

  j = ToSglangExpertLocation(TwoLayers(), 4);
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.status().message().find("model has 4 layers, but the placement has layer 4"),
            std::string::npos)
      << j.status().message();
}

TEST(PlacementExportTest, VllmStateMatchesEplbStateShapes) {
  StatusOr<nlohmann::json> j = ToVllmEplbState(TwoLayers());
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_EQ((*j)["physical_to_logical_map"].get<Rows>(),
            (Rows{{0, 1, 2, 3, 0, 1}, {0, 2, 0, 1, 0, 3}}));
  // Width num_redundant_experts + 1 = 6 - 4 + 1, slots increasing, -1 padding: the values of
  // vLLM's own docstring for this placement.
  using Maps = std::vector<Rows>;
  EXPECT_EQ((*j)["logical_to_physical_map"].get<Maps>(),
            (Maps{{{0, 4, -1}, {1, 5, -1}, {2, -1, -1}, {3, -1, -1}},
                  {{0, 2, 4}, {3, -1, -1}, {1, -1, -1}, {5, -1, -1}}}));
  EXPECT_EQ((*j)["logical_replica_count"].get<Rows>(), (Rows{{2, 2, 1, 1}, {3, 1, 1, 1}}));
  EXPECT_EQ((*j)["layers"].get<std::vector<int>>(), (std::vector<int>{3, 4}));
}

TEST(PlacementExportTest, VllmMapsRoundTrip) {
  Placement p;
  p.num_experts = 5;
  p.layer_ids = {0, 1, 2};
  p.physical_to_logical = {
      {4, 4, 4, 0, 1, 2, 3, 4}, {0, 1, 2, 3, 4, 0, 1, 2}, {3, 2, 1, 0, 4, 3, 3, 0}};
  StatusOr<nlohmann::json> j = ToVllmEplbState(p);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  const auto phys = (*j)["physical_to_logical_map"].get<Rows>();
  const auto logical = (*j)["logical_to_physical_map"].get<std::vector<Rows>>();
  const auto counts = (*j)["logical_replica_count"].get<Rows>();
  for (int l = 0; l < 3; ++l) {
    std::vector<int> seen(8, 0);
    for (int e = 0; e < 5; ++e) {
      ASSERT_EQ(logical[l][e].size(), 4u);  // 8 - 5 + 1
      for (int r = 0; r < 4; ++r) {
        const int slot = logical[l][e][r];
        if (r >= counts[l][e]) {
          EXPECT_EQ(slot, -1) << "layer " << l << " expert " << e;
          continue;
        }
        ASSERT_GE(slot, 0);
        ASSERT_LT(slot, 8);
        EXPECT_EQ(phys[l][slot], e) << "layer " << l << " slot " << slot;
        if (r > 0) {
          EXPECT_LT(logical[l][e][r - 1], slot);
        }
        ++seen[slot];
      }
    }
    EXPECT_EQ(seen, std::vector<int>(8, 1)) << "layer " << l << ": every slot listed once";
  }
}

// The subset of YAML the export writes: "key: value", "key:" and "  layer: [a, b, ...]" lines.
struct TrtllmConfig {
  int num_slots = -1;
  int layer_updates_per_iter = -1;
  std::map<int, std::vector<int>> assignments;
};

TrtllmConfig ParseTrtllmYaml(const std::string& text) {
  TrtllmConfig c;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("num_slots: ", 0) == 0) {
      c.num_slots = std::stoi(line.substr(11));
    } else if (line.rfind("layer_updates_per_iter: ", 0) == 0) {
      c.layer_updates_per_iter = std::stoi(line.substr(24));
    } else if (line.rfind("  ", 0) == 0) {
      const size_t colon = line.find(':');
      std::vector<int>& row = c.assignments[std::stoi(line.substr(2, colon - 2))];
      std::string list = line.substr(line.find('[') + 1);
      list = list.substr(0, list.find(']'));
      std::istringstream items(list);
      for (std::string item; std::getline(items, item, ',');) row.push_back(std::stoi(item));
    } else {
      EXPECT_EQ(line, "initial_global_assignments:");
    }
  }
  return c;
}

TEST(PlacementExportTest, TrtllmYamlIsKeyedByModelLayer) {
  StatusOr<std::string> yaml = ToTrtllmLoadBalancerYaml(TwoLayers());
  ASSERT_TRUE(yaml.ok()) << yaml.status().ToString();
  EXPECT_EQ(*yaml,
            "num_slots: 6\n"
            "initial_global_assignments:\n"
            "  3: [0, 1, 2, 3, 0, 1]\n"
            "  4: [0, 2, 0, 1, 0, 3]\n"
            "layer_updates_per_iter: 0\n");
  const TrtllmConfig c = ParseTrtllmYaml(*yaml);
  EXPECT_EQ(c.num_slots, 6);
  EXPECT_EQ(c.layer_updates_per_iter, 0);
  ASSERT_EQ(c.assignments.size(), 2u);
  EXPECT_EQ(c.assignments.at(3), (std::vector<int>{0, 1, 2, 3, 0, 1}));
  EXPECT_EQ(c.assignments.at(4), (std::vector<int>{0, 2, 0, 1, 0, 3}));
}

TEST(PlacementExportTest, ExportPlacementWritesParseableText) {
  StatusOr<std::string> text = ExportPlacement(TwoLayers(), ExportFormat::kVllm);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(text->back(), '\n');
  EXPECT_NE(text->find("[0,2,0,1,0,3]"), std::string::npos) << *text;  // a row per line
  EXPECT_EQ(nlohmann::json::parse(*text), *ToVllmEplbState(TwoLayers()));
  text = ExportPlacement(TwoLayers(), ExportFormat::kSglang, {.num_model_layers = 6});
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(nlohmann::json::parse(*text), *ToSglangExpertLocation(TwoLayers(), 6));
  text = ExportPlacement(TwoLayers(), ExportFormat::kTrtllm);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, *ToTrtllmLoadBalancerYaml(TwoLayers()));
}

TEST(PlacementExportTest, FormatNamesParse) {
  EXPECT_EQ(*ParseExportFormat("sglang"), ExportFormat::kSglang);
  EXPECT_EQ(*ParseExportFormat("vllm"), ExportFormat::kVllm);
  EXPECT_EQ(*ParseExportFormat("vllm-mapping"), ExportFormat::kVllmMapping);
  EXPECT_EQ(*ParseExportFormat("trtllm"), ExportFormat::kTrtllm);
  StatusOr<ExportFormat> bad = ParseExportFormat("onnx");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("\"onnx\"; expected sglang, vllm, vllm-mapping or trtllm"),
            std::string::npos);
}

TEST(PlacementExportTest, VllmMappingIsOneRecordKeyedByMoeLayer) {
  StatusOr<std::string> text = ExportPlacement(TwoLayers(), ExportFormat::kVllmMapping);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(std::count(text->begin(), text->end(), '\n'), 1);  // one JSONL line
  EXPECT_EQ(text->rfind("{\"record_type\":\"eplb_initial_mapping\",\"version\":1,", 0), 0u)
      << *text;
  const nlohmann::json j = nlohmann::json::parse(*text);
  EXPECT_EQ(j["record_type"], "eplb_initial_mapping");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["num_slots"], 6);
  EXPECT_EQ(j["num_redundant_experts"], 2);
  // Model layers 3 and 4 are MoE layers 0 and 1.
  ASSERT_EQ(j["initial_global_assignments"].size(), 2u);
  EXPECT_EQ(j["initial_global_assignments"]["0"],
            nlohmann::json(TwoLayers().physical_to_logical[0]));
  EXPECT_EQ(j["initial_global_assignments"]["1"],
            nlohmann::json(TwoLayers().physical_to_logical[1]));
}

TEST(PlacementExportTest, TrtllmMtpLayersFollowTheModelsLayers) {
  ExportOptions options;
  options.mtp_layers = 1;
  StatusOr<std::string> text = ExportPlacement(TwoLayers(), ExportFormat::kTrtllm, options);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  // The balanced row: slot p holds expert p % 4.
  EXPECT_NE(text->find("\n  5: [0, 1, 2, 3, 0, 1]\n"), std::string::npos) << *text;
  options.num_model_layers = 61;  // DeepSeek-V3: the MTP layer is 61
  options.mtp_layers = 2;
  options.mtp_copy_layer = 4;
  text = ExportPlacement(TwoLayers(), ExportFormat::kTrtllm, options);
  ASSERT_TRUE(text.ok());
  const std::string row2 = "[0, 2, 0, 1, 0, 3]";  // layer 4's row
  EXPECT_NE(text->find("\n  61: " + row2 + "\n  62: " + row2 + "\n"), std::string::npos) << *text;
  options.mtp_copy_layer = 7;
  text = ExportPlacement(TwoLayers(), ExportFormat::kTrtllm, options);
  ASSERT_FALSE(text.ok());
  EXPECT_NE(text.status().message().find("layer 7"), std::string::npos);
}

TEST(PlacementExportTest, LaunchFlagsNameEpSizeRedundancyAndSlots) {
  const std::string sglang = LaunchFlags(TwoLayers(), ExportFormat::kSglang, 3, "loc.json");
  EXPECT_NE(sglang.find("--ep-size 3 --ep-num-redundant-experts 2 --init-expert-location loc.json"),
            std::string::npos)
      << sglang;
  EXPECT_NE(sglang.find("6 slots per layer = 4 experts + 2 redundant, EP size 3 (2 per GPU)"),
            std::string::npos)
      << sglang;
  const std::string vllm = LaunchFlags(TwoLayers(), ExportFormat::kVllmMapping, 3, "m.jsonl");
  EXPECT_NE(vllm.find(R"(--eplb-config '{"num_redundant_experts": 2}')"), std::string::npos);
  EXPECT_NE(vllm.find("#41141"), std::string::npos);
  const std::string trt = LaunchFlags(TwoLayers(), ExportFormat::kTrtllm, 0, "lb.yaml");
  EXPECT_NE(trt.find("--ep_size <EP size>"), std::string::npos) << trt;
  EXPECT_NE(trt.find("EP size unknown"), std::string::npos);
  EXPECT_NE(trt.find("num_slots 6"), std::string::npos);
  EXPECT_NE(
      LaunchFlags(TwoLayers(), ExportFormat::kVllm, 4, "x").find("do not divide by EP size 4"),
      std::string::npos);
}

TEST(PlacementExportTest, EmptySlotsGetReplicasOfTheLeastReplicatedExperts) {
  Placement p;
  p.num_experts = 4;
  p.layer_ids = {0};
  p.physical_to_logical = {{0, 1, 2, -1, -1, 3, 0, -1}};
  StatusOr<std::string> refused = ExportPlacement(p, ExportFormat::kTrtllm);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("layer 0, slot 3: empty"), std::string::npos)
      << refused.status().message();
  EXPECT_EQ(FillEmptySlots(&p), 3);
  EXPECT_EQ(p.physical_to_logical[0], (std::vector<ExpertId>{0, 1, 2, 1, 2, 3, 0, 3}));
  EXPECT_TRUE(ExportPlacement(p, ExportFormat::kTrtllm).ok());
}

TEST(PlacementExportTest, UnexportablePlacementsAreNamed) {
  Placement p = TwoLayers();
  p.layer_ids = {4, 3};
  StatusOr<std::string> r = ExportPlacement(p, ExportFormat::kTrtllm);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("layer 3 (row 1): layer ids must be"), std::string::npos)
      << r.status().message();

  p = TwoLayers();
  p.physical_to_logical[1] = {0, 2, 0, 1, 0, 2};
  r = ExportPlacement(p, ExportFormat::kVllm);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("layer 4: expert 3 has no replica"), std::string::npos)
      << r.status().message();

  p = TwoLayers();
  p.physical_to_logical[0][5] = 4;
  r = ExportPlacement(p, ExportFormat::kSglang);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("layer 3, slot 5: expert 4 is not in [0, 4)"),
            std::string::npos)
      << r.status().message();
}

}  // namespace
}  // namespace grace
