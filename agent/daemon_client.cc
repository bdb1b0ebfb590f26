// The agent's side of the wire protocol; the socket (plaintext or TLS, every wait bounded) is
// agent/daemon_connection.h's.
#include "agent/daemon_client.h"

#include <openssl/rand.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "agent/epoch_switcher.h"
#include "tls/daemon_connection.h"

namespace grace {

using Clock = std::chrono::steady_clock;

std::chrono::milliseconds DaemonSilenceLimit(uint32_t heartbeat_ms) {
  return std::chrono::milliseconds(std::max<int64_t>(3000, 6 * int64_t{heartbeat_ms}));
}

class DaemonClient::Impl {
 public:
  explicit Impl(const AgentConfig& c)
      : c_(c), conn_(c.daemon_address, c.daemon_tls, c.cluster_secret) {}
  StatusOr<Welcome> Connect(Epoch epoch);
  Status Run(ServingState& state, std::vector<RankSlotWeights>& sources,
             const std::atomic<bool>* stop);

 private:
  // `placement_json`: the placement the agent serves at `epoch` (empty when fresh).
  Status Dial(Epoch epoch, const std::string& placement_json, Welcome* welcome);
  Status SendFrame(const WireMessage& m);
  // The workers' counts since the last report, taken (zeroed): per-expert loads, the top
  // co-activation pairs and the dispatch traffic of every layer.
  LoadReport TakeReport(ServingState& state);
  // Decodes what has arrived within `wait`; fails when the connection is gone (logged).
  Status Receive(std::chrono::milliseconds wait, std::vector<WireMessage>* out);

  const AgentConfig& c_;
  DaemonConnection conn_;
  FrameDecoder decoder_;
  bool connected_ = false;
  uint32_t heartbeat_ms_ = 1000, report_ms_ = 1000;
  Clock::time_point last_heard_{};  // the last bytes from graced on this connection
  uint64_t report_from_ = 0;
  std::vector<uint64_t> pair_sums_;  // one layer's pair counts summed over the local ranks
  std::vector<WireMessage> early_;   // frames that followed the Welcome in its read
};

LoadReport DaemonClient::Impl::TakeReport(ServingState& state) {
  const int layers = c_.model.num_layers, experts = c_.model.num_experts;
  LoadReport r;
  r.step_from = report_from_;
  for (const RankProgress& p : state.ranks) r.step_to = std::max(r.step_to, p.next_step.load());
  report_from_ = r.step_to;
  r.num_layers = layers;
  r.num_experts = experts;
  const int counts_size = layers * experts;
  r.counts.assign(counts_size, 0);
  for (RankProgress& p : state.ranks) {
    for (int i = 0; i < counts_size; ++i) {
      r.counts[i] += p.counts[i].exchange(0, std::memory_order_relaxed);
    }
  }
  r.coactivation_sample_every = static_cast<uint32_t>(std::max(1, c_.coactivation_sample_every));
  r.coactivation_max_pairs = static_cast<uint32_t>(c_.coactivation_max_pairs);
  for (int l = 0; l < layers; ++l) {
    pair_sums_.assign(state.ranks.front().live->pairs_per_layer(), 0);
    for (RankProgress& p : state.ranks) p.live->TakePairs(l, pair_sums_);
    AppendTopPairs(l, pair_sums_, experts, c_.coactivation_max_pairs, &r);
  }
  r.slots_per_rank = static_cast<uint32_t>(c_.topology.slots_per_gpu);
  for (size_t i = 0; i < state.ranks.size(); ++i) {
    LoadReport::RankTraffic t;
    t.rank = c_.first_rank + static_cast<RankId>(i);
    for (int l = 0; l < layers; ++l) t.layers.push_back(state.ranks[i].live->TakeDispatch(l));
    r.traffic.push_back(std::move(t));
  }
  return r;
}

Status DaemonClient::Impl::SendFrame(const WireMessage& m) {
  const std::string frame = EncodeFrame(m);
  // graced that takes no bytes for connect_timeout_ms is as good as gone: the connection is
  // closed and redialled rather than the control thread stuck.
  Status s = conn_.Send(frame, Clock::now() + std::chrono::milliseconds(c_.connect_timeout_ms));
  if (!s.ok()) {
    connected_ = false;
    return Unavailable("daemon " + c_.daemon_address + ": send: " + s.message());
  }
  return Status::Ok();
}

Status DaemonClient::Impl::Receive(std::chrono::milliseconds wait, std::vector<WireMessage>* out) {
  std::string bytes;
  if (Status s = conn_.Receive(wait, &bytes); !s.ok()) {
    std::fprintf(stderr, "grace-agent %s: daemon connection lost: %s\n", c_.agent_id.c_str(),
                 s.message().c_str());
    connected_ = false;
    return s;
  }
  if (bytes.empty()) return Status::Ok();
  last_heard_ = Clock::now();
  decoder_.Append(bytes);
  WireMessage m;
  while (true) {
    StatusOr<bool> more = decoder_.Next(&m);
    if (!more.ok()) {
      std::fprintf(stderr, "grace-agent %s: bad frame from the daemon: %s\n", c_.agent_id.c_str(),
                   more.status().ToString().c_str());
      connected_ = false;
      conn_.Close();
      return more.status();
    }
    if (!*more) break;
    out->push_back(std::move(m));
  }
  return Status::Ok();
}

Status DaemonClient::Impl::Dial(Epoch epoch, const std::string& placement_json, Welcome* welcome) {
  decoder_ = FrameDecoder();
  // Connecting, the TLS handshake and the protocol's handshake share one deadline.
  const auto deadline = Clock::now() + std::chrono::milliseconds(c_.connect_timeout_ms);
  connected_ = false;
  GRACE_RETURN_IF_ERROR(conn_.Open(deadline));
  connected_ = true;
  std::vector<WireMessage> in;
  bool hello_sent = false;
  std::array<uint8_t, 32> nonce{};
  while (Clock::now() < deadline) {
    if (Status s = Receive(std::chrono::milliseconds(50), &in); !s.ok()) {
      if (s.code() == StatusCode::kFailedPrecondition) return s;  // the tls settings differ
      return Unavailable("daemon " + c_.daemon_address +
                         " closed the connection in the handshake: " + s.message());
    }
    for (size_t i = 0; i < in.size(); ++i) {
      WireMessage& m = in[i];
      if (auto* ch = std::get_if<Challenge>(&m); ch != nullptr && !hello_sent) {
        Hello h;
        h.agent_id = c_.agent_id;
        h.node = c_.first_rank / c_.topology.gpus_per_node;
        for (int i = 0; i < c_.local_ranks; ++i) h.ranks.push_back(c_.first_rank + i);
        h.slots_per_rank = c_.topology.slots_per_gpu;
        h.epoch = epoch;
        h.placement_json = placement_json;
        RAND_bytes(nonce.data(), static_cast<int>(nonce.size()));
        h.daemon_nonce = nonce;
        h.spare_slots = c_.spare_slots;
        h.proof = ProveSecret(c_.cluster_secret, ch->nonce);
        GRACE_RETURN_IF_ERROR(SendFrame(h));
        hello_sent = true;
      } else if (auto* w = std::get_if<Welcome>(&m); w != nullptr) {
        // The daemon proves the secret too: a process that took graced's address cannot
        // command this agent.
        if (!w->daemon_proof ||
            !ProofsEqual(*w->daemon_proof, ProveSecret(c_.cluster_secret, nonce))) {
          connected_ = false;
          return FailedPrecondition("daemon " + c_.daemon_address +
                                    " did not prove the cluster secret (not graced, or another "
                                    "cluster's)");
        }
        *welcome = std::move(*w);
        heartbeat_ms_ = std::max<uint32_t>(1, welcome->heartbeat_ms);
        report_ms_ = std::max<uint32_t>(1, welcome->report_ms);
        last_heard_ = Clock::now();
        // What came in the same read after the Welcome (a PREPARE right behind it) is kept
        // for Run, not dropped.
        early_.assign(std::make_move_iterator(in.begin() + static_cast<std::ptrdiff_t>(i) + 1),
                      std::make_move_iterator(in.end()));
        return Status::Ok();
      } else if (auto* r = std::get_if<Refused>(&m); r != nullptr) {
        connected_ = false;
        return FailedPrecondition("daemon " + c_.daemon_address + " refused agent " + c_.agent_id +
                                  ": " + r->reason);
      }
    }
    in.clear();
  }
  connected_ = false;
  return DeadlineExceeded("daemon " + c_.daemon_address + ": no Welcome");
}

StatusOr<Welcome> DaemonClient::Impl::Connect(Epoch epoch) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(c_.connect_timeout_ms);
  int backoff_ms = 20;
  Status last;
  while (true) {
    Welcome w;
    last = Dial(epoch, "", &w);
    if (last.ok()) return w;
    if (last.code() == StatusCode::kFailedPrecondition) return last;
    if (Clock::now() + std::chrono::milliseconds(backoff_ms) > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
    backoff_ms = std::min(backoff_ms * 2, c_.reconnect_max_ms);
  }
  return DeadlineExceeded(last.message() + " (gave up after " +
                          std::to_string(c_.connect_timeout_ms) + " ms)");
}

Status DaemonClient::Impl::Run(ServingState& state, std::vector<RankSlotWeights>& sources,
                               const std::atomic<bool>* stop) {
  EpochSwitcher switcher(c_, state, sources,
                         [this](const WireMessage& m) { return connected_ && SendFrame(m).ok(); });
  auto next_heartbeat = Clock::now(), next_report = Clock::now();
  int backoff_ms = 20;
  auto next_dial = Clock::now();
  std::vector<WireMessage> in;
  while (true) {
    if (stop != nullptr && stop->load() && state.stop_at.load() == kNoSwitchStep) {
      // One step past the furthest local worker: every local rank can reach it.
      uint64_t at = 0;
      for (const RankProgress& r : state.ranks) at = std::max(at, r.next_step.load());
      state.stop_at.store(at + 1);
      std::fprintf(stderr, "grace-agent %s: SIGTERM; leaving before step %llu\n",
                   c_.agent_id.c_str(), static_cast<unsigned long long>(at + 1));
    }
    bool all_finished = true;
    for (const RankProgress& r : state.ranks) all_finished &= r.finished.load();
    if (all_finished) break;
    if (!connected_) {
      if (Clock::now() < next_dial) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      switcher.OnDisconnected();
      Welcome w;
      Status s = Dial(switcher.serving_epoch(),
                      PlacementToJson(state.view.load()->current->placement(), c_.topology), &w);
      if (!s.ok()) {
        next_dial = Clock::now() + std::chrono::milliseconds(backoff_ms);
        backoff_ms = std::min(backoff_ms * 2, c_.reconnect_max_ms);
        continue;
      }
      backoff_ms = 20;
      switcher.OnWelcome(w);
      if (w.epoch != switcher.serving_epoch() && !switcher.switching_to(w.epoch)) {
        std::fprintf(stderr,
                     "grace-agent %s: rejoined at epoch %llu but serves epoch %llu and has "
                     "not staged it; the ranks stay on their common epoch\n",
                     c_.agent_id.c_str(), static_cast<unsigned long long>(w.epoch),
                     static_cast<unsigned long long>(switcher.serving_epoch()));
      }
    }
    in = std::move(early_);
    early_.clear();
    (void)Receive(std::chrono::milliseconds(5), &in);  // a lost connection is redialled above
    if (connected_ && Clock::now() - last_heard_ > DaemonSilenceLimit(heartbeat_ms_)) {
      // graced sends at least a Heartbeat every heartbeat_ms: a connection this quiet is
      // half-open (a lost host, a dropped route) although sends still succeed.
      std::fprintf(stderr,
                   "grace-agent %s: nothing from the daemon for %lld ms (limit %lld ms); "
                   "redialling\n",
                   c_.agent_id.c_str(),
                   static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              Clock::now() - last_heard_)
                                              .count()),
                   static_cast<long long>(DaemonSilenceLimit(heartbeat_ms_).count()));
      conn_.Close();
      connected_ = false;
      continue;
    }
    for (const WireMessage& m : in) {
      if (auto* p = std::get_if<Prepare>(&m)) switcher.OnPrepare(*p);
      if (auto* cm = std::get_if<Commit>(&m)) switcher.OnCommit(*cm);
      if (auto* a = std::get_if<Abort>(&m)) switcher.OnAbort(*a);
    }
    switcher.Advance();
    const auto now = Clock::now();
    if (connected_ && now >= next_heartbeat) {
      uint64_t step = 0;
      for (const RankProgress& r : state.ranks) step = std::max(step, r.next_step.load());
      (void)SendFrame(Heartbeat{step, switcher.serving_epoch()});
      next_heartbeat = now + std::chrono::milliseconds(heartbeat_ms_);
    }
    if (connected_ && now >= next_report) {
      (void)SendFrame(TakeReport(state));
      next_report = now + std::chrono::milliseconds(report_ms_);
    }
  }
  // The last steps' counts, so that graced has every step the workers ran.
  if (connected_) (void)SendFrame(TakeReport(state));
  if (connected_ && state.stop_at.load() != kNoSwitchStep) {
    // Leaving on purpose: graced marks this agent "left", not lost.
    (void)SendFrame(Goodbye{state.stop_at.load(), "SIGTERM"});
  }
  switcher.DropUncommitted();
  conn_.Close();
  return Status::Ok();
}

DaemonClient::DaemonClient(const AgentConfig& config) : impl_(std::make_unique<Impl>(config)) {}
DaemonClient::~DaemonClient() = default;
StatusOr<Welcome> DaemonClient::Connect(Epoch epoch) {
  return impl_->Connect(epoch);
}
Status DaemonClient::Run(ServingState& state, std::vector<RankSlotWeights>& sources,
                         const std::atomic<bool>* stop) {
  return impl_->Run(state, sources, stop);
}

}  // namespace grace
