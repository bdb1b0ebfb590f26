#include "daemon/history_store.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace grace {
namespace {

class HistoryStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("grace_store_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "history.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<HistoryStore> Open() {
    auto store = OpenSqliteHistoryStore(path_);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return std::move(store).value();
  }

  static PlacementRecord Record(Epoch epoch, std::vector<ExpertId> row) {
    PlacementRecord r;
    r.epoch = epoch;
    r.committed_at_ms = 1000 * static_cast<int64_t>(epoch);
    r.topology.nodes = 1;
    r.topology.gpus_per_node = 2;
    r.topology.slots_per_gpu = 2;
    r.topology.inter_node_gbps = 400;
    r.placement.num_experts = 3;
    r.placement.layer_ids = {3};
    r.placement.physical_to_logical = {std::move(row)};
    return r;
  }

  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(HistoryStoreTest, CommittedPlacementSurvivesReopen) {
  {
    auto store = Open();
    ASSERT_TRUE(store->CommitPlacement(Record(1, {0, 1, 2, -1})).ok());
    ASSERT_TRUE(store->CommitPlacement(Record(2, {0, 1, 2, 0})).ok());
  }
  auto store = Open();  // the schema is already there: migrations are not re-run
  auto current = store->CurrentPlacement();
  ASSERT_TRUE(current.ok());
  ASSERT_TRUE(current->has_value());
  EXPECT_EQ((*current)->epoch, 2u);
  EXPECT_EQ((*current)->placement.physical_to_logical[0], (std::vector<ExpertId>{0, 1, 2, 0}));
  EXPECT_DOUBLE_EQ((*current)->topology.inter_node_gbps, 400);
  auto first = store->PlacementAt(1);
  ASSERT_TRUE(first.ok() && first->has_value());
  EXPECT_EQ((*first)->placement.physical_to_logical[0][3], -1);
  auto missing = store->PlacementAt(9);
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
}

TEST_F(HistoryStoreTest, DuplicateEpochIsRefused) {
  auto store = Open();
  ASSERT_TRUE(store->CommitPlacement(Record(1, {0, 1, 2, -1})).ok());
  EXPECT_FALSE(store->CommitPlacement(Record(1, {0, 1, 2, 2})).ok());
}

TEST_F(HistoryStoreTest, DecisionsArePagedFilteredAndUpdated) {
  auto store = Open();
  for (int i = 0; i < 5; ++i) {
    StoredDecision d;
    d.time_ms = 100 * i;
    d.action = i % 2 == 0 ? "add_replica" : "swap";
    d.layer_index = i % 2;
    d.reason = "skew " + std::to_string(i);
    d.predicted_gain_ms = i;
    d.bytes = 1000u * i;
    auto id = store->RecordDecision(d);
    ASSERT_TRUE(id.ok());
  }
  HistoryQuery q;
  q.limit = 2;
  auto page = store->ListDecisions(q);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].reason, "skew 4");  // newest first
  q.offset = 2;
  page = store->ListDecisions(q);
  EXPECT_EQ((*page)[0].reason, "skew 2");
  HistoryQuery layer1;
  layer1.layer_index = 1;
  auto only1 = store->ListDecisions(layer1);
  ASSERT_EQ(only1->size(), 2u);
  HistoryQuery window;
  window.from_ms = 100;
  window.to_ms = 300;
  EXPECT_EQ(store->ListDecisions(window)->size(), 3u);

  const int64_t id = (*store->ListDecisions({}))[0].id;
  ASSERT_TRUE(store->SetRealisedGain(id, 2.5).ok());
  ASSERT_TRUE(store->SetDecisionEpoch(id, 7).ok());
  auto d = (*store->ListDecisions({}))[0];
  EXPECT_EQ(d.realised_gain_ms, 2.5);
  EXPECT_EQ(d.epoch, 7u);
  EXPECT_EQ(store->SetRealisedGain(9999, 1).code(), StatusCode::kNotFound);
}

TEST_F(HistoryStoreTest, LoadIsDownsampledAndExpired) {
  SqliteStoreOptions opt;
  opt.raw_keep_ms = 60'000;      // one minute of raw samples
  opt.minute_keep_ms = 600'000;  // ten minutes of one-minute means
  opt.retention_ms = 3'600'000;  // an hour of ten-minute means
  auto opened = OpenSqliteHistoryStore(path_, opt);
  ASSERT_TRUE(opened.ok());
  auto& store = *opened;
  // Two hours of one report per second for one layer of 2 experts.
  const int64_t end_ms = 2 * 3600 * 1000;
  for (int64_t t = 0; t < end_ms; t += 1000) {
    const float v = static_cast<float>(t / 1000 % 120);
    const float load[2] = {v, 1.0f};
    ASSERT_TRUE(store->RecordLoad(t, 0, load).ok());
  }
  ASSERT_TRUE(store->Compact(end_ms).ok());
  HistoryQuery all;
  all.limit = 1000;
  auto rows = store->QueryLoad(all);
  ASSERT_TRUE(rows.ok());
  int raw = 0, minute = 0, ten = 0;
  for (const LoadSample& s : *rows) {
    raw += s.resolution_s == 0;
    minute += s.resolution_s == 60;
    ten += s.resolution_s == 600;
    EXPECT_FLOAT_EQ(s.load[1], 1.0f);  // a mean of constants stays constant
    EXPECT_GE(s.time_ms, end_ms - opt.retention_ms - 600'000);
  }
  EXPECT_LE(raw, 61);
  EXPECT_GT(raw, 0);
  EXPECT_LE(minute, 11);
  EXPECT_GT(minute, 0);
  EXPECT_LE(ten, 7);
  EXPECT_GT(ten, 0);
  // A one-minute bucket holds the mean of its 60 raw samples: v cycles 0..119 in two minutes.
  for (const LoadSample& s : *rows) {
    if (s.resolution_s == 60) {
      const int64_t minute_of_cycle = s.time_ms / 60'000 % 2;
      EXPECT_NEAR(s.load[0], minute_of_cycle == 0 ? 29.5f : 89.5f, 1e-3);
    }
  }
}

TEST_F(HistoryStoreTest, PolicyChangesAndAgentEventsAreKept) {
  auto store = Open();
  ASSERT_TRUE(store->RecordPolicyChange({10, "api", "horizon_s", "60", "120"}).ok());
  ASSERT_TRUE(store->RecordAgentEvent({11, "node0", "joined", "2 ranks"}).ok());
  auto changes = store->ListPolicyChanges({});
  ASSERT_EQ(changes->size(), 1u);
  EXPECT_EQ((*changes)[0].new_value, "120");
  auto events = store->ListAgentEvents({});
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].event, "joined");
}

TEST_F(HistoryStoreTest, RefusedConnectionsArePrunedAndOtherEventsKept) {
  auto store = Open();
  const int64_t day_ms = 24LL * 3600 * 1000, now = 10 * day_ms;
  ASSERT_TRUE(store->RecordAgentEvent({now - 3 * day_ms, "node0", "joined", ""}).ok());
  ASSERT_TRUE(store->RecordAgentEvent({now - 2 * day_ms, "1.2.3.4:5", "refused", "old"}).ok());
  for (int i = 0; i < 1200; ++i) {
    ASSERT_TRUE(store->RecordAgentEvent({now - 1000 + i, "1.2.3.4:5", "refused", "x"}).ok());
  }
  ASSERT_TRUE(store->Compact(now).ok());
  HistoryQuery page;
  page.limit = 1000;
  auto events = store->ListAgentEvents(page);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 1000u);  // the newest 1000 refusals...
  EXPECT_EQ(events->front().time_ms, now - 1000 + 1199);
  EXPECT_EQ(events->back().time_ms, now - 1000 + 200);
  page.offset = 1000;
  events = store->ListAgentEvents(page);
  ASSERT_EQ(events->size(), 1u);  // ...and the join
  EXPECT_EQ((*events)[0].event, "joined");
}

TEST_F(HistoryStoreTest, GarbageInsideTheFileIsFoundAtOpenNamingIt) {
  {
    auto store = Open();
    for (Epoch e = 1; e <= 200; ++e)
      ASSERT_TRUE(store->CommitPlacement(Record(e, {0, 1, 2, 0})).ok());
  }
  const auto size = std::filesystem::file_size(path_);
  ASSERT_GT(size, 3 * 4096u);
  {
    // Pages 2 and 3 (the first table's pages) overwritten; the header stays valid.
    std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096);
    const std::string garbage(2 * 4096, '\x5a');
    f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  auto store = OpenSqliteHistoryStore(path_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(store.status().message().find(path_), std::string::npos);
  EXPECT_NE(store.status().message().find("damaged"), std::string::npos);
}

TEST_F(HistoryStoreTest, AnOnlineBackupRestoresTheHistory) {
  auto store = Open();
  ASSERT_TRUE(store->CommitPlacement(Record(1, {0, 1, 2, 0})).ok());
  ASSERT_TRUE(store->CommitPlacement(Record(2, {2, 1, 0, 0})).ok());
  const std::string backup = (dir_ / "backup.db").string();
  ASSERT_TRUE(CopyHistoryDatabase(path_, backup).ok());  // while the store is open
  store.reset();
  std::filesystem::resize_file(path_, 0);  // the history lost
  ASSERT_TRUE(CopyHistoryDatabase(backup, path_).ok());
  store = Open();
  auto current = store->CurrentPlacement();
  ASSERT_TRUE(current.ok() && current->has_value());
  EXPECT_EQ((*current)->epoch, 2u);
  EXPECT_EQ((*current)->placement.physical_to_logical[0], (std::vector<ExpertId>{2, 1, 0, 0}));
  std::filesystem::resize_file(backup, 5000);
  {
    std::ofstream f(backup, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(100);
    f << std::string(4000, 'x');
  }
  EXPECT_FALSE(CopyHistoryDatabase(backup, (dir_ / "again.db").string()).ok());
}

TEST_F(HistoryStoreTest, UnopenablePathIsNamed) {
  auto store = OpenSqliteHistoryStore((dir_ / "no/such/dir/x.db").string());
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("no/such/dir"), std::string::npos);
}

}  // namespace
}  // namespace grace
