// MoeLayer's measured traffic on a real dispatch: 4 CPU ranks (2 nodes x 2 GPUs) over TCP
// loopback, each expert on one slot, hand-picked top-3 experts per token. The counters must
// equal the sends and computed pairs counted by hand from the cost model's rule (a token counts
// once per distinct GPU other than home, once per distinct node other than home's), and the cost
// model's own traffic for the same tokens (policy/cost_model.h TrafficOnTokens).
#include "agent/moe_layer.h"

#include <thread>

#include <gtest/gtest.h>

#include "agent/live_counters.h"
#include "agent/local_cluster.h"
#include "kernels/expert_weights.h"
#include "migrate/tcp_transport.h"
#include "policy/cost_model.h"
#include "policy/locality_routing.h"

namespace grace {
namespace {

// Experts 2r and 2r + 1 live on rank r (slots 2r, 2r + 1); ranks 0, 1 on node 0, ranks 2, 3 on
// node 1. Each rank's tokens, top-3 expert ids per token.
const std::vector<std::vector<int32_t>> kTokenExperts = {
    {0, 1, 2, 4, 5, 6, 2, 4, 7, 0, 3, 5},  // rank 0
    {2, 3, 0, 6, 7, 1},                    // rank 1
    {4, 6, 0, 1, 2, 3, 5, 4, 7},           // rank 2
    {7, 6, 5},                             // rank 3
};

TEST(MoeLayerTest, MeasuredTrafficEqualsAHandCount) {
  const Topology topo{.nodes = 2, .gpus_per_node = 2, .slots_per_gpu = 2};
  const ModelShape shape{.num_experts = 8, .top_k = 3, .hidden = 16, .ffn = 8, .num_layers = 1};
  Placement placement = Placement::Empty(8, {0}, topo.total_slots());
  for (SlotId s = 0; s < topo.total_slots(); ++s) placement.physical_to_logical[0][s] = s;
  auto table = RoutingTableBuilder(1, topo, placement).Build();
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  const ExpertWeights weights = GenerateExpertWeights(shape, 3);
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());

  std::vector<MeasuredDispatch> measured(4);
  std::vector<DispatchCounts> reported(4);
  std::vector<Status> results(4);
  std::vector<std::thread> ranks;
  for (RankId r = 0; r < 4; ++r) {
    ranks.emplace_back([&, r] {
      results[r] = [&]() -> Status {
        TcpTransportOptions o;
        o.rank = r;
        o.size = 4;
        o.rendezvous_port = static_cast<uint16_t>(*port);
        GRACE_ASSIGN_OR_RETURN(std::unique_ptr<TcpTransport> t, TcpTransport::Connect(o));
        std::unique_ptr<ExpertBackend> backend = MakeCpuExpertBackend(shape, 1, 2);
        for (int i = 0; i < 2; ++i) {
          const ExpertId e = 2 * r + i;
          GRACE_RETURN_IF_ERROR(
              backend->LoadSlot(0, i, weights.W1(0, e), weights.W3(0, e), weights.W2(0, e)));
        }
        const std::vector<int32_t>& ids = kTokenExperts[r];
        const int tokens = static_cast<int>(ids.size()) / 3;
        std::vector<int64_t> token_ids(tokens);
        for (int i = 0; i < tokens; ++i) token_ids[i] = 10 * r + i;
        std::vector<float> gate(ids.size(), 1.0f / 3), x(tokens * shape.hidden, 0.5f);
        MoeLayer layer(shape, topo.slots_per_gpu, topo.gpus_per_node, t.get(), backend.get());
        StepTimes times;
        GRACE_RETURN_IF_ERROR(layer.Run(**table, 0, 0, 1, token_ids.data(), ids.data(), gate.data(),
                                        tokens, x.data(), &times));
        measured[r] = layer.measured();
        LiveCounters live(1, shape.num_experts, topo.slots_per_gpu, 1);
        live.AddDispatch(0, layer.measured());
        reported[r] = live.TakeDispatch(0);
        return Status::Ok();
      }();
    });
  }
  for (std::thread& t : ranks) t.join();
  for (const Status& s : results) ASSERT_TRUE(s.ok()) << s.ToString();

  // By hand, token by token (destination ranks; remote / node / cross-node sends):
  //   rank 0: {0,1,2} -> {0,1}: 1/1/0   {4,5,6} -> {2,3}: 2/0/1   {2,4,7} -> {1,2,3}: 3/1/1
  //           {0,3,5} -> {0,1,2}: 2/1/1                                   sums 8/3/3, 4 tokens
  //   rank 1: {2,3,0} -> {1,0}: 1/1/0   {6,7,1} -> {3,0}: 2/1/1           sums 3/2/1, 2 tokens
  //   rank 2: {4,6,0} -> {2,3,0}: 2/1/1 {1,2,3} -> {0,1}: 2/0/1 {5,4,7} -> {2,3}: 1/1/0
  //                                                                       sums 5/2/2, 3 tokens
  //   rank 3: {7,6,5} -> {3,2}: 1/1/0                                     sums 1/1/0, 1 token
  // Pairs computed per expert (= slot): e0 4, e1 3, e2 4, e3 3, e4..e7 4 each.
  struct Want {
    int64_t tokens, remote, node, cross_node;
    std::vector<int32_t> slot_pairs;
  };
  const Want want[4] = {
      {4, 8, 3, 3, {4, 3}}, {2, 3, 2, 1, {4, 3}}, {3, 5, 2, 2, {4, 4}}, {1, 1, 1, 0, {4, 4}}};
  const int64_t token_bytes = 16 * sizeof(float);
  for (int r = 0; r < 4; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    EXPECT_EQ(measured[r].tokens, want[r].tokens);
    EXPECT_EQ(measured[r].sends.remote, want[r].remote);
    EXPECT_EQ(measured[r].sends.node, want[r].node);
    EXPECT_EQ(measured[r].sends.cross_node, want[r].cross_node);
    EXPECT_EQ(measured[r].slot_pairs, want[r].slot_pairs);
    // The same figures as the agent's counters hand them to the report.
    const DispatchCounts& d = reported[r];
    EXPECT_EQ(d.tokens, static_cast<uint64_t>(want[r].tokens));
    EXPECT_EQ(d.remote_sends, static_cast<uint64_t>(want[r].remote));
    EXPECT_EQ(d.node_sends, static_cast<uint64_t>(want[r].node));
    EXPECT_EQ(d.cross_node_sends, static_cast<uint64_t>(want[r].cross_node));
    EXPECT_EQ(d.intra_node_bytes, static_cast<uint64_t>(want[r].node * token_bytes));
    EXPECT_EQ(d.cross_node_bytes, static_cast<uint64_t>(want[r].cross_node * token_bytes));
    EXPECT_EQ(d.slot_pairs,
              std::vector<uint32_t>(want[r].slot_pairs.begin(), want[r].slot_pairs.end()));
  }

  // What graced's benchmark compares through GET /api/v1/traffic: the measured sums are the
  // cost model's remote and cross-node sends and rank loads on the same tokens.
  LayerTokens tokens;
  tokens.top_k = 3;
  for (RankId r = 0; r < 4; ++r) {
    tokens.expert_ids.insert(tokens.expert_ids.end(), kTokenExperts[r].begin(),
                             kTokenExperts[r].end());
    tokens.home_rank.insert(tokens.home_rank.end(), kTokenExperts[r].size() / 3, r);
  }
  const std::vector<double> load(8, 1.0);
  const LayerRouting routing = LocalityRouting(placement.physical_to_logical[0], load, topo);
  const LayerTraffic model = TrafficOnTokens(tokens, routing, topo);
  int64_t remote = 0, cross_node = 0;
  for (int r = 0; r < 4; ++r) {
    remote += measured[r].sends.remote;
    cross_node += measured[r].sends.cross_node;
    int64_t computed = 0;
    for (int32_t v : measured[r].slot_pairs) computed += v;
    EXPECT_EQ(computed, model.rank_load[r]) << "rank " << r;
  }
  EXPECT_EQ(model.tokens, 10);
  EXPECT_EQ(remote, model.remote_sends);
  EXPECT_EQ(cross_node, model.cross_node_sends);
}

}  // namespace
}  // namespace grace
