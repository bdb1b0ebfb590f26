// The control loop's intake of load reports, on a fake clock: a report whose co-activation
// section graced's decoder refused still has its counts merged and its traffic measured, and
// the refusal is counted; a good report's pairs are taken, and its traffic summed per layer. An
// agent's ABORT for weights that failed their digest is counted on /metrics.
#include "daemon/control_loop.h"

#include <algorithm>
#include <cmath>

#include <gtest/gtest.h>

#include "daemon/rest_api.h"

namespace grace {
namespace {

// The report as graced's agent server hands it over: decoded from the frame bytes.
LoadReport ReceivedReport(const LoadReport& sent) {
  FrameDecoder decoder;
  decoder.Append(EncodeFrame(sent));
  WireMessage m;
  auto more = decoder.Next(&m);
  EXPECT_TRUE(more.ok() && *more) << more.status().ToString();
  return std::get<LoadReport>(m);
}

class ControlLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.topology = {.nodes = 2, .gpus_per_node = 1, .slots_per_gpu = 3};
    config_.model.num_experts = 4;
    config_.model.top_k = 2;
    config_.model.layer_ids = {3, 4};
    config_.policy.interval_s = 1;
    config_.policy.min_gain_ms = 1e9;  // observe only: no migration
    auto store = OpenSqliteHistoryStore(":memory:");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    loop_ =
        std::make_unique<ControlLoop>(config_, std::move(store).value(), [this] { return now_; });
    ASSERT_TRUE(loop_->Init().ok());
  }

  // One step of rank 1 (node 1): 4 tokens, each sent once to rank 0 on the other node.
  LoadReport Report() const {
    LoadReport r;
    r.step_from = 0;
    r.step_to = 1;
    r.num_layers = 2;
    r.num_experts = 4;
    r.counts = {3, 1, 0, 4, 2, 2, 2, 2};
    r.coactivation_sample_every = 4;
    r.coactivation_max_pairs = 8;
    r.coactivation = {{0, 3, 0, {{0, 3, 2}, {1, 3, 1}}}};
    r.slots_per_rank = 3;
    DispatchCounts d{4, 0, 4, 4, 0, 4 * 128, {2, 1, 1}};
    r.traffic = {{1, {d, d}}};
    return r;
  }

  DaemonConfig config_;
  int64_t now_ = 1000000;
  std::unique_ptr<ControlLoop> loop_;
};

TEST_F(ControlLoopTest, RefusedCoactivationKeepsTheCountsAndTraffic) {
  LoadReport bad = Report();
  bad.coactivation[0].pairs[1].b = 1;  // a == b
  const LoadReport received = ReceivedReport(bad);
  ASSERT_NE(received.coactivation_error.find("co-activation section: layer_index 0: pair (1, 1) "
                                             "has a == b"),
            std::string::npos)
      << received.coactivation_error;
  loop_->OnMessage("node1", received);
  LoadReport oversized = Report();
  oversized.coactivation_max_pairs = 1;  // 2 pairs in layer 0
  const LoadReport received_oversized = ReceivedReport(oversized);
  EXPECT_NE(received_oversized.coactivation_error.find("pair count 2 exceeds max_pairs 1"),
            std::string::npos)
      << received_oversized.coactivation_error;
  loop_->OnMessage("node1", received_oversized);
  now_ += 1500;
  loop_->Tick();

  const DaemonMetrics m = loop_->Metrics();
  EXPECT_EQ(m.load_reports_total, 2u);
  EXPECT_EQ(m.coactivation_refused_total, 2u);
  EXPECT_EQ(m.coactivation_pairs_total, 0u);
  EXPECT_EQ(m.traffic_refused_total, 0u);
  // The counts were merged: the interval's observed load per step is the reports' (one step
  // each).
  const std::vector<ForecastSample> layer1 = loop_->ForecastHistory(1, 1);
  ASSERT_EQ(layer1.size(), 1u);
  EXPECT_EQ(layer1[0].actual, (std::vector<float>{2, 2, 2, 2}));
  const std::vector<ForecastSample> layer0 = loop_->ForecastHistory(0, 1);
  EXPECT_EQ(layer0[0].actual, (std::vector<float>{3, 1, 0, 4}));
  // And so was the traffic.
  const TrafficSnapshot t = loop_->Traffic();
  ASSERT_EQ(t.total.size(), 2u);
  EXPECT_EQ(t.layer_ids, (std::vector<LayerId>{3, 4}));
  EXPECT_EQ(t.total[0].tokens, 8u);
  EXPECT_EQ(t.total[0].cross_node_sends, 8u);
}

TEST_F(ControlLoopTest, GoodReportsAddPairsAndTrafficPerLayer) {
  loop_->OnMessage("node1", ReceivedReport(Report()));
  loop_->OnMessage("node1", ReceivedReport(Report()));
  now_ += 1500;
  loop_->Tick();
  const DaemonMetrics m = loop_->Metrics();
  EXPECT_EQ(m.coactivation_refused_total, 0u);
  EXPECT_EQ(m.coactivation_pairs_total, 4u);
  EXPECT_EQ(m.coactivation_sampled_mass_total, 6u);
  EXPECT_EQ(m.coactivation_dropped_mass_total, 0u);
  const TrafficSnapshot t = loop_->Traffic();
  ASSERT_EQ(t.total.size(), 2u);
  for (const MeasuredLayerTraffic& l : t.total) {
    EXPECT_EQ(l.tokens, 8u);
    EXPECT_EQ(l.remote_sends, 8u);
    EXPECT_EQ(l.cross_node_sends, 8u);
    EXPECT_EQ(l.node_sends, 0u);
    EXPECT_EQ(l.cross_node_bytes, 8u * 128);
    EXPECT_EQ(l.rank_load, (std::vector<uint64_t>{0, 8}));
  }
  // The window is the interval's; only rank 1 computed: max / mean = 8 / 4.
  EXPECT_EQ(t.window[0].tokens, 8u);
  EXPECT_DOUBLE_EQ(t.window[0].imbalance, 2.0);
  EXPECT_DOUBLE_EQ(m.measured_window[1].imbalance, 2.0);

  // A traffic section naming a rank outside the topology is refused; the counts still count.
  LoadReport stray = Report();
  stray.traffic[0].rank = 9;
  loop_->OnMessage("node1", ReceivedReport(stray));
  EXPECT_EQ(loop_->Metrics().traffic_refused_total, 1u);
  EXPECT_EQ(loop_->Metrics().load_reports_total, 3u);
  EXPECT_EQ(loop_->Traffic().total[0].tokens, 8u);
}

// Each control round lands in the duration histogram; from the second interval on, the
// forecast's and the last value's absolute errors and the load are summed into counters.
TEST_F(ControlLoopTest, RoundsAndForecastErrorsAreCounted) {
  loop_->OnMessage("node1", ReceivedReport(Report()));
  now_ += 1500;
  loop_->Tick();
  DaemonMetrics m = loop_->Metrics();
  EXPECT_EQ(m.control_round_seconds.count(), 1u);
  EXPECT_EQ(m.forecast_load_total, 0);  // nothing was forecast for the first interval
  EXPECT_FALSE(m.migration_in_progress);

  LoadReport next = Report();
  next.counts = {1, 1, 4, 2, 0, 4, 2, 2};
  loop_->OnMessage("node1", ReceivedReport(next));
  now_ += 1500;
  loop_->Tick();
  m = loop_->Metrics();
  EXPECT_EQ(m.control_round_seconds.count(), 2u);
  EXPECT_DOUBLE_EQ(m.forecast_load_total, 16);
  // |{1,1,4,2,0,4,2,2} - {3,1,0,4,2,2,2,2}|
  EXPECT_DOUBLE_EQ(m.last_value_abs_error_total, 2 + 0 + 4 + 2 + 2 + 2 + 0 + 0);
  double forecast_error = 0;
  for (int layer = 0; layer < 2; ++layer) {
    const std::vector<ForecastSample> h = loop_->ForecastHistory(layer, 1);
    ASSERT_EQ(h.size(), 1u);
    ASSERT_EQ(h[0].forecast.size(), 4u);
    for (size_t e = 0; e < 4; ++e) forecast_error += std::abs(h[0].forecast[e] - h[0].actual[e]);
  }
  EXPECT_NEAR(m.forecast_abs_error_total, forecast_error, 1e-5);
}

// PUT /policy with interval_s 3600, then 1: the next interval comes within the new second, not
// an hour later.
TEST_F(ControlLoopTest, AShorterIntervalTakesEffectAtOnce) {
  PolicySettings p = config_.policy;
  p.interval_s = 3600;
  ASSERT_TRUE(loop_->SetPolicy(p, "test").ok());
  now_ += 1500;
  loop_->OnMessage("node1", ReceivedReport(Report()));
  loop_->Tick();  // the first interval was due (it was set by Init): it runs
  const size_t after_first = loop_->Trends(100).size();
  now_ += 1500;
  loop_->OnMessage("node1", ReceivedReport(Report()));
  loop_->Tick();  // now the next one is an hour away
  EXPECT_EQ(loop_->Trends(100).size(), after_first);
  p.interval_s = 1;
  ASSERT_TRUE(loop_->SetPolicy(p, "test").ok());
  now_ += 1100;
  loop_->Tick();
  EXPECT_EQ(loop_->Trends(100).size(), after_first + 1);
}

// SIGTERM on an agent: its Goodbye, then its connection closing, is a "left" event, not a
// "lost" one; and with no migration in flight the watchdog gauges read idle.
TEST_F(ControlLoopTest, AnAgentThatSaysGoodbyeLeftAndWasNotLost) {
  loop_->OnMessage("node1", Goodbye{42, "SIGTERM"});
  loop_->OnAgentLost("node1", "connection closed");
  loop_->OnAgentLost("node0", "silent for more than 3000 ms");
  std::vector<std::string> events;
  loop_->WithHistory([&](HistoryStore& h) {
    auto list = h.ListAgentEvents({});
    ASSERT_TRUE(list.ok());
    for (const AgentEvent& e : *list) events.push_back(e.agent_id + ":" + e.event);
  });
  EXPECT_NE(std::find(events.begin(), events.end(), "node1:left"), events.end());
  EXPECT_EQ(std::find(events.begin(), events.end(), "node1:lost"), events.end());
  EXPECT_NE(std::find(events.begin(), events.end(), "node0:lost"), events.end());
  const DaemonMetrics m = loop_->Metrics();
  EXPECT_EQ(m.migration_phase, 0);
  EXPECT_EQ(m.migration_age_s, 0);
}

TEST_F(ControlLoopTest, AnAgentAheadOfALostHistoryIsAdopted) {
  // A fresh grace.db (epoch 1) while the agents serve epoch 4: graced takes their epoch and
  // placement instead of planning epoch 2, which every agent would refuse.
  ASSERT_EQ(loop_->epoch(), 1u);
  Placement served;
  loop_->WithHistory([&](HistoryStore& h) { served = (*h.CurrentPlacement())->placement; });
  std::swap(served.physical_to_logical[0][0], served.physical_to_logical[0][1]);
  Hello hello;
  hello.agent_id = "node1";
  hello.node = 1;
  hello.ranks = {1};
  hello.slots_per_rank = 3;
  hello.epoch = 4;
  StatusOr<Welcome> refused = loop_->OnAgentJoined(hello);  // ahead, but no placement
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("did not send its placement"), std::string::npos);
  hello.placement_json = PlacementToJson(served, config_.topology);
  StatusOr<Welcome> w = loop_->OnAgentJoined(hello);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->epoch, 4u);
  EXPECT_EQ(loop_->epoch(), 4u);
  loop_->WithHistory([&](HistoryStore& h) {
    auto current = h.CurrentPlacement();
    ASSERT_TRUE(current.ok() && current->has_value());
    EXPECT_EQ((*current)->epoch, 4u);
    EXPECT_EQ((*current)->placement.physical_to_logical, served.physical_to_logical);
  });
}

TEST_F(ControlLoopTest, AnAppliedPlacementPreparesTheNextEpochOrSaysWhyNot) {
  std::vector<std::pair<std::string, Prepare>> sent;
  loop_->SetSender(
      [&](const std::string& agent, const WireMessage& m) {
        if (const auto* p = std::get_if<Prepare>(&m)) sent.emplace_back(agent, *p);
        return true;
      },
      [] {
        return std::vector<AgentStatus>{{"node0", 0, {0}, "up", 1, 0, 0},
                                        {"node1", 1, {1}, "up", 1, 0, 0}};
      });
  Placement p;
  loop_->WithHistory([&](HistoryStore& h) { p = (*h.CurrentPlacement())->placement; });
  const std::string same = PlacementToJson(p, config_.topology);
  StatusOr<Epoch> refused = loop_->ApplyPlacement(same, "test");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("nothing to migrate"), std::string::npos);
  refused = loop_->ApplyPlacement("{\"topology\": 1}", "test");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(sent.empty());

  // Rank 0's first slot and rank 1's first slot trade experts in layer 4.
  std::swap(p.physical_to_logical[1][0], p.physical_to_logical[1][3]);
  ASSERT_NE(p.physical_to_logical[1][0], p.physical_to_logical[1][3]);
  StatusOr<Epoch> epoch = loop_->ApplyPlacement(PlacementToJson(p, config_.topology), "test");
  ASSERT_TRUE(epoch.ok()) << epoch.status().ToString();
  EXPECT_EQ(*epoch, 2u);
  ASSERT_EQ(sent.size(), 2u);  // every agent that is up
  for (const auto& [agent, prepare] : sent) {
    EXPECT_EQ(prepare.epoch, 2u) << agent;
    EXPECT_FALSE(prepare.transfers.empty()) << agent;
  }
  StatusOr<Epoch> busy = loop_->ApplyPlacement(PlacementToJson(p, config_.topology), "test");
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.status().code(), StatusCode::kFailedPrecondition);
  bool recorded = false;
  loop_->WithHistory([&](HistoryStore& h) {
    auto decisions = h.ListDecisions({});
    ASSERT_TRUE(decisions.ok());
    for (const StoredDecision& d : *decisions) {
      recorded = recorded ||
                 (d.action == "apply" && d.reason.find("applied by test") != std::string::npos);
    }
  });
  EXPECT_TRUE(recorded);
}

// An agent's ABORT because received weights failed their digest aborts the migration and is
// counted on /metrics; an ABORT for another cause aborts without being counted.
TEST_F(ControlLoopTest, AnAbortForWeightIntegrityIsCountedOnMetrics) {
  std::vector<std::string> aborts_sent;
  loop_->SetSender(
      [&](const std::string& agent, const WireMessage& m) {
        if (std::holds_alternative<Abort>(m)) aborts_sent.push_back(agent);
        return true;
      },
      [] {
        return std::vector<AgentStatus>{{"node0", 0, {0}, "up", 1, 0, 0},
                                        {"node1", 1, {1}, "up", 1, 0, 0}};
      });
  auto metric = [&](const std::string& name) {
    const std::string text = PrometheusText(loop_->Metrics());
    const size_t at = text.find("\n" + name + " ");
    return at == std::string::npos
               ? std::string("absent")
               : text.substr(at + name.size() + 2, text.find('\n', at + 1) - at - name.size() - 2);
  };
  EXPECT_EQ(metric("grace_migration_integrity_failures_total"), "0");
  Placement p;
  loop_->WithHistory([&](HistoryStore& h) { p = (*h.CurrentPlacement())->placement; });
  for (AbortCause cause : {AbortCause::kOther, AbortCause::kWeightIntegrity}) {
    // A slot of rank 0 and one of rank 1 trade experts: the first, then also the second pair.
    const int k = cause == AbortCause::kOther ? 0 : 1;
    std::swap(p.physical_to_logical[1][k], p.physical_to_logical[1][3 + k]);
    ASSERT_NE(p.physical_to_logical[1][k], p.physical_to_logical[1][3 + k]);
    StatusOr<Epoch> epoch = loop_->ApplyPlacement(PlacementToJson(p, config_.topology), "test");
    ASSERT_TRUE(epoch.ok()) << epoch.status().ToString();
    aborts_sent.clear();
    loop_->OnMessage("node1", Abort{*epoch, "weight integrity: layer index 1 expert 0", cause});
    loop_->Tick();
    EXPECT_EQ(aborts_sent.size(), 2u);  // the migration aborts everywhere
  }
  EXPECT_EQ(metric("grace_migration_integrity_failures_total"), "1");
  EXPECT_EQ(metric("grace_migrations_aborted_total"), "2");
}

// Frames refused by the protocol-state checks are counted per reason on /metrics, every reason
// always listed: a step beyond the step rate (refused by the agent server) and a READY from an
// agent not in the migration (refused here).
TEST_F(ControlLoopTest, RefusedFramesAreCountedPerReasonOnMetrics) {
  auto sample = [&](const std::string& reason) {
    const std::string text = PrometheusText(loop_->Metrics());
    const std::string key = "grace_agent_frames_refused_total{reason=\"" + reason + "\"} ";
    const size_t at = text.find(key);
    return at == std::string::npos
               ? std::string("absent")
               : text.substr(at + key.size(), text.find('\n', at) - at - key.size());
  };
  EXPECT_EQ(sample("step_beyond_rate"), "0");
  EXPECT_EQ(sample("not_in_migration"), "0");
  loop_->OnFrameRefused("node0", FrameRefusal::kStepBeyondRate);
  loop_->OnFrameRefused("node0", FrameRefusal::kStepBeyondRate);
  loop_->OnMessage("stranger-agent", Ready{2});  // no migration runs: no agent may answer one
  loop_->OnMessage("stranger-agent", Switched{2, 10});
  loop_->OnMessage("node0", Heartbeat{5, 1});  // not a migration answer: never refused as one
  EXPECT_EQ(sample("step_beyond_rate"), "2");
  EXPECT_EQ(sample("not_in_migration"), "2");
}

}  // namespace
}  // namespace grace
