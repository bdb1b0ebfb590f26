// `gracectl export` on a real SQLite store written by graced's SqliteHistoryStore and on plan
// files (also one planned from SGLang's logical_count dump of DeepSeek-V3); bad input exits 2.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon/history_store.h"
#include "tests/testing/real_traces.h"

namespace grace {
namespace {

using Rows = std::vector<std::vector<int>>;

struct CommandRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class ExportCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("grace_export_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  CommandRun Gracectl(const std::string& args) const {
    const std::string out = Path("stdout"), err = Path("stderr");
    const int status =
        std::system((std::string(GRACECTL_PATH) + " " + args + " >" + out + " 2>" + err).c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, ReadText(out), ReadText(err)};
  }

  // graced's store with two epochs of a 2-layer (model layers 1 and 2), 4-expert, 6-slot
  // placement on 3 ranks; epoch 2 has a spare (empty) slot.
  std::string MakeStore() const {
    const std::string state_dir = Path("state");
    std::filesystem::create_directories(state_dir);
    auto store = OpenSqliteHistoryStore(state_dir + "/grace.db");
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    for (Epoch epoch : {1, 2}) {
      PlacementRecord r;
      r.epoch = epoch;
      r.committed_at_ms = 1000 * static_cast<int64_t>(epoch);
      r.topology.nodes = 1;
      r.topology.gpus_per_node = 3;
      r.topology.slots_per_gpu = 2;
      r.placement.num_experts = 4;
      r.placement.layer_ids = {1, 2};
      r.placement.physical_to_logical = epoch == 1 ? Rows{{0, 1, 2, 3, 0, 1}, {0, 2, 0, 1, 0, 3}}
                                                   : Rows{{3, 2, 1, 0, 3, 3}, {0, 2, 0, 1, -1, 3}};
      EXPECT_TRUE((*store)->CommitPlacement(r).ok());
    }
    return state_dir;
  }

  std::filesystem::path dir_;
};

TEST_F(ExportCommandTest, EpochsOfTheStoreExportDifferently) {
  const std::string state = MakeStore();
  CommandRun one = Gracectl("export --state-dir " + state + " --epoch 1 --format sglang");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(nlohmann::json::parse(one.out)["physical_to_logical_map"].get<Rows>(),
            (Rows{{0, 1, 2, 3, 0, 1}, {0, 1, 2, 3, 0, 1}, {0, 2, 0, 1, 0, 3}}));

  CommandRun two = Gracectl("export --state-dir " + state + " --epoch 2 --format sglang");
  ASSERT_EQ(two.exit_code, 0) << two.err;
  // The spare slot 4 of layer 2 gets expert 1, the least replicated one.
  EXPECT_EQ(nlohmann::json::parse(two.out)["physical_to_logical_map"].get<Rows>(),
            (Rows{{0, 1, 2, 3, 0, 1}, {3, 2, 1, 0, 3, 3}, {0, 2, 0, 1, 1, 3}}));
  EXPECT_NE(two.err.find("epoch 2: filled 1 empty (spare) slots"), std::string::npos) << two.err;

  CommandRun current = Gracectl("export --state-dir " + state + " --format sglang");
  ASSERT_EQ(current.exit_code, 0) << current.err;
  EXPECT_EQ(current.out, two.out);

  const std::string yaml = Path("epoch1.yaml");
  CommandRun trt =
      Gracectl("export --state-dir " + state + " --epoch 1 --format trtllm -o " + yaml);
  ASSERT_EQ(trt.exit_code, 0) << trt.err;
  EXPECT_EQ(ReadText(yaml),
            "num_slots: 6\n"
            "initial_global_assignments:\n"
            "  1: [0, 1, 2, 3, 0, 1]\n"
            "  2: [0, 2, 0, 1, 0, 3]\n"
            "layer_updates_per_iter: 0\n");

  CommandRun vllm = Gracectl("export --state-dir " + state + " --epoch 2 --format vllm");
  ASSERT_EQ(vllm.exit_code, 0) << vllm.err;
  const nlohmann::json j = nlohmann::json::parse(vllm.out);
  EXPECT_EQ(j["logical_replica_count"].get<Rows>(), (Rows{{1, 1, 1, 3}, {2, 2, 1, 1}}));
  EXPECT_EQ(j["logical_to_physical_map"][0][3].get<std::vector<int>>(),
            (std::vector<int>{0, 4, 5}));
  EXPECT_EQ(j["logical_to_physical_map"][1][1].get<std::vector<int>>(),
            (std::vector<int>{3, 4, -1}));
}

TEST_F(ExportCommandTest, PlanFileExports) {
  Placement p;
  p.num_experts = 4;
  p.layer_ids = {0, 1};
  p.physical_to_logical = {{0, 1, 2, 3, 0, 1}, {0, 2, 0, 1, 0, 3}};
  Topology t;
  t.gpus_per_node = 3;
  t.slots_per_gpu = 2;
  const std::string plan = Path("plan.json");
  std::ofstream(plan) << PlacementToJson(p, t) << "\n";
  CommandRun r = Gracectl("export --placement " + plan + " --format vllm");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["physical_to_logical_map"].get<Rows>(), p.physical_to_logical);
  EXPECT_EQ(j["logical_replica_count"].get<Rows>(), (Rows{{2, 2, 1, 1}, {3, 1, 1, 1}}));
  // stdout is the file alone; the launch flags the file implies are on stderr.
  EXPECT_NE(r.err.find("gracectl: launch: 6 slots per layer = 4 experts + 2 redundant, EP size 3 "
                       "(2 per GPU)\n"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("gracectl: launch: vLLM: --enable-expert-parallel (EP size = TP x DP = 3) "
                       "--enable-eplb --eplb-config '{\"num_redundant_experts\": 2}'"),
            std::string::npos)
      << r.err;

  const std::string location = Path("loc.json");
  r = Gracectl("export --placement " + plan + " --format sglang -o " + location);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_NE(r.err.find("SGLang: --tp-size 3 --ep-size 3 --ep-num-redundant-experts 2 "
                       "--init-expert-location " +
                       location + "\n"),
            std::string::npos)
      << r.err;

  // --ep-size must agree with the plan's topology.
  r = Gracectl("export --placement " + plan + " --format sglang --ep-size 2");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("was planned for 3 ranks"), std::string::npos) << r.err;
}

TEST_F(ExportCommandTest, VllmInitialMappingRecord) {
  const std::string state = MakeStore();
  CommandRun r = Gracectl("export --state-dir " + state + " --epoch 1 --format vllm-mapping");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["record_type"], "eplb_initial_mapping");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["num_slots"], 6);
  EXPECT_EQ(j["num_redundant_experts"], 2);
  EXPECT_EQ(j["initial_global_assignments"]["0"].get<std::vector<int>>(),
            (std::vector<int>{0, 1, 2, 3, 0, 1}));
  EXPECT_EQ(j["initial_global_assignments"]["1"].get<std::vector<int>>(),
            (std::vector<int>{0, 2, 0, 1, 0, 3}));
  EXPECT_NE(r.err.find("#41141"), std::string::npos) << r.err;
}

TEST_F(ExportCommandTest, TrtllmMtpLayers) {
  const std::string state = MakeStore();
  CommandRun r =
      Gracectl("export --state-dir " + state + " --epoch 1 --format trtllm --mtp-layers 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "num_slots: 6\n"
            "initial_global_assignments:\n"
            "  1: [0, 1, 2, 3, 0, 1]\n"
            "  2: [0, 2, 0, 1, 0, 3]\n"
            "  3: [0, 1, 2, 3, 0, 1]\n"
            "layer_updates_per_iter: 0\n");
  r = Gracectl("export --state-dir " + state +
               " --epoch 1 --format trtllm --model-layers 61 --mtp-layers 1 --mtp-copy-layer 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\n  61: [0, 2, 0, 1, 0, 3]\nlayer_updates"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("TensorRT-LLM: trtllm-serve --tp_size 3 --ep_size 3"), std::string::npos)
      << r.err;
  r = Gracectl("export --state-dir " + state + " --format sglang --mtp-layers 1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("apply to --format trtllm only"), std::string::npos) << r.err;
}

// vLLM's routed experts, as saved API responses, plan and export as the proposed mapping record.
TEST_F(ExportCommandTest, VllmRoutedExpertsPlanAndExportAsMappingRecord) {
  const std::string plan = Path("plan.json");
  CommandRun r = Gracectl("plan --trace " + std::string(GRACE_FIXTURES_DIR) +
                          "/vllm_responses.jsonl --nodes 1 --gpus-per-node 2 --slots-per-gpu 5 "
                          "-o " +
                          plan);
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  r = Gracectl("export --placement " + plan + " --format vllm-mapping");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["num_slots"], 10);
  EXPECT_EQ(j["num_redundant_experts"], 2);
  // The responses' layers 1 and 2 (layer 0 routed nothing) are MoE layers 0 and 1.
  ASSERT_EQ(j["initial_global_assignments"].size(), 2u);
  for (const auto& [layer, row] : j["initial_global_assignments"].items()) {
    std::vector<int> replicas(8, 0);
    for (int e : row.get<std::vector<int>>()) ++replicas.at(e);
    for (int e = 0; e < 8; ++e) EXPECT_GE(replicas[e], 1) << "layer " << layer << " expert " << e;
  }
  EXPECT_NE(r.err.find("EP size 2 (5 per GPU)"), std::string::npos) << r.err;
}

// SGLang's own recorder dump (a torch.save .pt file) plans and exports back to SGLang.
TEST_F(ExportCommandTest, SglangRecorderPtDumpPlansAndExports) {
  const std::string plan = Path("plan.json");
  CommandRun r =
      Gracectl("plan --trace " + std::string(GRACE_FIXTURES_DIR) +
               "/sglang_stat.pt --nodes 1 --gpus-per-node 2 --slots-per-gpu 5 -o " + plan);
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  r = Gracectl("export --placement " + plan + " --format sglang");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Rows rows = nlohmann::json::parse(r.out)["physical_to_logical_map"].get<Rows>();
  ASSERT_EQ(rows.size(), 4u);  // model layers 0..3, layer 0 dense
  for (const auto& row : rows) EXPECT_EQ(row.size(), 10u);
  EXPECT_NE(r.err.find("--ep-num-redundant-experts 2"), std::string::npos) << r.err;
}

TEST_F(ExportCommandTest, BadInputExitsTwoNamingIt) {
  const std::string state = MakeStore();
  CommandRun r = Gracectl("export --state-dir " + state + " --epoch 7 --format sglang");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("no epoch 7 in " + state + "/grace.db; epochs 1..2"), std::string::npos)
      << r.err;

  r = Gracectl("export --state-dir " + state + " --format onnx");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--format: unknown export format \"onnx\""), std::string::npos) << r.err;

  const std::string missing = Path("nowhere");
  r = Gracectl("export --state-dir " + missing + " --format vllm");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("cannot read " + missing + "/grace.db"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(missing + "/grace.db"));

  r = Gracectl("export --placement " + missing + ".json --format trtllm");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--placement: cannot open " + missing + ".json"), std::string::npos)
      << r.err;

  const std::string broken = Path("broken.json");
  std::ofstream(broken) << "{\"layers\": [0]}\n";
  r = Gracectl("export --placement " + broken + " --format trtllm");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(broken + ": missing array \"physical_to_logical_map\""), std::string::npos)
      << r.err;

  r = Gracectl("export --placement " + broken + " --epoch 1 --format trtllm");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--epoch"), std::string::npos) << r.err;

  r = Gracectl("export --format sglang");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--state-dir DIR"), std::string::npos) << r.err;
}

// SGLang's expert distribution dump of DeepSeek-V3 (61 layers x 256 experts, dense layers 0..2 as
// zeros) plans into a placement that exports back to SGLang.
TEST_F(ExportCommandTest, SglangLogicalCountDumpPlansAndExportsToSglang) {
  GRACE_REQUIRE_REAL_TRACES(traces);
  const std::string dump = traces + "/deepseek-v3-sglang-stats/prefill_in1024.json";
  const std::string plan = Path("plan.json");
  CommandRun r = Gracectl("plan --trace " + dump +
                          " --nodes 4 --gpus-per-node 8 --slots-per-gpu 9 --hidden 7168 "
                          "--expert-ffn 2048 -o " +
                          plan);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string location = Path("expert_location.json");
  r = Gracectl("export --placement " + plan + " --format sglang -o " + location);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(ReadText(location));
  ASSERT_EQ(j.size(), 1u);
  const Rows rows = j["physical_to_logical_map"].get<Rows>();
  ASSERT_EQ(rows.size(), 61u);  // DeepSeek-V3's num_hidden_layers
  for (size_t l = 0; l < rows.size(); ++l) {
    ASSERT_EQ(rows[l].size(), 4u * 8 * 9) << "layer " << l;
    std::vector<int> replicas(256, 0);
    for (int e : rows[l]) {
      ASSERT_GE(e, 0);
      ASSERT_LT(e, 256);
      ++replicas[e];
    }
    for (int e = 0; e < 256; ++e) EXPECT_GE(replicas[e], 1) << "layer " << l << " expert " << e;
  }
}

}  // namespace
}  // namespace grace
