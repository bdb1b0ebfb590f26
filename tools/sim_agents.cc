#include "tools/sim_agents.h"

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <chrono>
#include <cmath>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "core/wire_protocol.h"
#include "tls/async_agent_channel.h"

namespace grace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class SimAgentFleet::Impl {
 public:
  class Agent;

  explicit Impl(SimAgentOptions o) : options(std::move(o)) {}

  SimAgentOptions options;
  std::shared_ptr<const AgentChannelTlsContext> tls;  // null: plaintext
  asio::io_context io;
  std::thread thread;
  std::vector<std::shared_ptr<Agent>> agents;
  mutable std::mutex mu;  // guards stats
  SimAgentStats stats;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();

  // The co-activation section of a phase's layer: the same for every agent (it follows the
  // phase's shares alone), so built once, not once per agent and report. I/O thread only.
  std::map<std::pair<int64_t, int>, LoadReport::CoactivationLayer> coactivation;

  // Agents connect at options.connects_per_second (a fleet of thousands all at once is a SYN
  // flood, not a fleet restart): a batch every 10 ms.
  void ConnectFrom(size_t first);
  asio::steady_timer connect_timer{io};

  uint64_t CurrentStep() const {
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return static_cast<uint64_t>(s * options.steps_per_second);
  }
};

class SimAgentFleet::Impl::Agent : public std::enable_shared_from_this<Agent> {
 public:
  Agent(Impl& fleet, int node)
      : fleet_(fleet),
        node_(node),
        channel_(tcp::socket(fleet.io), fleet.tls),
        timer_(fleet.io),
        rng_(fleet.options.seed + node) {}

  void Start() {
    auto self = shared_from_this();
    tcp::endpoint ep(asio::ip::make_address(fleet_.options.daemon_host),
                     static_cast<unsigned short>(fleet_.options.daemon_port));
    channel_.socket().async_connect(ep, [self](boost::system::error_code ec) {
      if (ec) return;
      self->channel_.AsyncStart([self](const Status& s) {
        if (!s.ok()) {
          return self->Bump([&](SimAgentStats& st) {
            ++st.failed_starts;
            st.last_failure = s.message();
          });
        }
        self->Read();
      });
    });
  }

 private:
  const SimAgentOptions& opt() const { return fleet_.options; }

  void Read() {
    auto self = shared_from_this();
    channel_.AsyncReadSome(buf_.data(), buf_.size(), [self](const Status& s, size_t n) {
      if (!s.ok()) return;
      self->decoder_.Append(std::string_view(self->buf_.data(), n));
      WireMessage m;
      while (true) {
        StatusOr<bool> more = self->decoder_.Next(&m);
        if (!more.ok() || !*more) break;
        self->Handle(m);
      }
      self->Read();
    });
  }

  void Write(const WireMessage& m) { WriteFrame(EncodeFrame(m)); }
  void WriteFrame(std::string frame) {
    const bool idle = out_.empty();
    out_.push_back(std::move(frame));
    if (idle) WriteNext();
  }

  // The layer's co-activation as an agent sends it: the top pairs, here the pairs of its
  // hottest experts, each pair's expected sampled count under independent choices.
  static LoadReport::CoactivationLayer MakeCoactivation(const SimAgentOptions& o, int layer,
                                                        const std::vector<double>& share,
                                                        double norm, double tokens) {
    LoadReport::CoactivationLayer c;
    c.layer_index = static_cast<uint32_t>(layer);
    const int pairs = std::min(o.coactivation_pairs, o.num_experts * (o.num_experts - 1) / 2);
    if (pairs <= 0 || norm <= 0) return c;
    std::vector<int> hot(o.num_experts);
    for (int e = 0; e < o.num_experts; ++e) hot[e] = e;
    std::sort(hot.begin(), hot.end(), [&](int a, int b) { return share[a] > share[b]; });
    const double sampled = tokens / o.coactivation_sample_every;
    const double per_token = o.top_k * (o.top_k - 1) / 2.0;
    uint64_t sent = 0;
    for (int i = 1; i < o.num_experts && static_cast<int>(c.pairs.size()) < pairs; ++i) {
      for (int j = 0; j < i && static_cast<int>(c.pairs.size()) < pairs; ++j) {
        const double p = share[hot[i]] / norm * share[hot[j]] / norm * 2 * per_token;
        const uint32_t count = static_cast<uint32_t>(sampled * p + 0.5);
        c.pairs.push_back({static_cast<uint16_t>(std::min(hot[i], hot[j])),
                           static_cast<uint16_t>(std::max(hot[i], hot[j])), count});
        sent += count;
      }
    }
    std::sort(
        c.pairs.begin(), c.pairs.end(),
        [](const LoadReport::Pair& a, const LoadReport::Pair& b) { return a.count > b.count; });
    c.sampled_mass = std::max<uint64_t>(sent, static_cast<uint64_t>(sampled * per_token));
    c.dropped_mass = c.sampled_mass - sent;
    return c;
  }

  // Every rank's traffic: each token sent to 1.5 other GPUs of its node and 3 other nodes (as
  // far as the topology has them), 3.5 GPUs there, a DeepSeek-V3-like spread of top-8 over
  // 8-GPU nodes; its pairs even over its slots.
  void AddTraffic(LoadReport* r) {
    const SimAgentOptions& o = opt();
    const uint64_t tokens = (r->step_to - r->step_from) * static_cast<uint64_t>(o.tokens_per_step);
    const uint64_t token_bytes = static_cast<uint64_t>(o.hidden) * 2;  // bf16
    const uint64_t node = tokens * std::min(3, 2 * (o.topology.gpus_per_node - 1)) / 2;
    const uint64_t cross = tokens * std::min(3, o.topology.nodes - 1);
    DispatchCounts d{
        tokens, node, node + cross * 7 / 6, cross, node * token_bytes, cross * token_bytes, {}};
    d.slot_pairs.assign(o.topology.slots_per_gpu,
                        static_cast<uint32_t>(tokens * o.top_k / o.topology.slots_per_gpu));
    r->slots_per_rank = static_cast<uint32_t>(o.topology.slots_per_gpu);
    for (int g = 0; g < o.topology.gpus_per_node; ++g) {
      r->traffic.push_back(
          {node_ * o.topology.gpus_per_node + g, std::vector<DispatchCounts>(o.num_layers, d)});
    }
  }
  void WriteNext() {
    auto self = shared_from_this();
    channel_.AsyncWrite(out_.front(), [self](const Status& s) {
      if (!s.ok()) return;
      self->out_.pop_front();
      if (!self->out_.empty()) self->WriteNext();
    });
  }

  void Handle(const WireMessage& m) {
    if (const Challenge* c = std::get_if<Challenge>(&m)) {
      Hello h;
      h.agent_id = "sim-node" + std::to_string(node_);
      h.node = node_;
      for (int g = 0; g < opt().topology.gpus_per_node; ++g) {
        h.ranks.push_back(node_ * opt().topology.gpus_per_node + g);
      }
      h.slots_per_rank = opt().topology.slots_per_gpu;
      h.epoch = epoch_;
      h.proof = ProveSecret(opt().cluster_secret, c->nonce);
      Write(h);
    } else if (const Welcome* w = std::get_if<Welcome>(&m)) {
      epoch_ = w->epoch;
      if (w->report_ms > 0) report_ms_ = w->report_ms;
      heartbeat_ms_ = w->heartbeat_ms > 0 ? w->heartbeat_ms : 500;
      last_report_step_ = fleet_.CurrentStep();
      Bump([](SimAgentStats& s) { ++s.connected; });
      Schedule();
    } else if (std::holds_alternative<Refused>(m)) {
      Bump([](SimAgentStats& s) { ++s.refused; });
    } else if (const Prepare* p = std::get_if<Prepare>(&m)) {
      Bump([](SimAgentStats& s) { ++s.prepares; });
      auto self = shared_from_this();
      auto t = std::make_shared<asio::steady_timer>(fleet_.io);
      t->expires_after(std::chrono::milliseconds(opt().ready_delay_ms));
      const Epoch e = p->epoch;
      t->async_wait([self, t, e](boost::system::error_code ec) {
        if (!ec) self->Write(Ready{e});
      });
    } else if (const Commit* c = std::get_if<Commit>(&m)) {
      Bump([](SimAgentStats& s) { ++s.commits; });
      pending_commit_ = *c;
    } else if (std::holds_alternative<Abort>(m)) {
      Bump([](SimAgentStats& s) { ++s.aborts; });
    }
  }

  // One tick every heartbeat period: heartbeat, the switch when due, a report when due.
  void Schedule() {
    auto self = shared_from_this();
    timer_.expires_after(std::chrono::milliseconds(std::min(heartbeat_ms_, report_ms_)));
    timer_.async_wait([self](boost::system::error_code ec) {
      if (ec) return;
      const uint64_t step = self->fleet_.CurrentStep();
      if (self->pending_commit_ && step >= self->pending_commit_->switch_step) {
        self->epoch_ = self->pending_commit_->epoch;
        self->Write(Switched{self->epoch_, step});
        self->pending_commit_.reset();
        self->Bump(
            [e = self->epoch_](SimAgentStats& s) { s.newest_epoch = std::max(s.newest_epoch, e); });
      }
      self->Write(Heartbeat{step, self->epoch_});
      const auto now = std::chrono::steady_clock::now();
      if (now - self->last_report_ >= std::chrono::milliseconds(self->report_ms_)) {
        self->SendReport(step);
        self->last_report_ = now;
      }
      self->Schedule();
    });
  }

  void SendReport(uint64_t step) {
    const SimAgentOptions& o = opt();
    LoadReport r;
    r.step_from = last_report_step_;
    r.step_to = std::max(step, last_report_step_ + 1);
    last_report_step_ = r.step_to;
    r.num_layers = o.num_layers;
    r.num_experts = o.num_experts;
    const int64_t phase = o.drift_every_reports > 0 ? reports_ / o.drift_every_reports : 0;
    if (phase != counts_phase_) DrawCounts(phase);
    // The phase's counts, drawn once for a report of the nominal length, scaled to this one's:
    // a Poisson draw per expert and report was most of the fleet's time at 10,000 ranks.
    const double steps = static_cast<double>(r.step_to - r.step_from);
    const double scale = steps / std::max(1e-9, NominalSteps());
    r.counts.resize(counts_.size());
    for (size_t i = 0; i < counts_.size(); ++i) {
      r.counts[i] = static_cast<uint32_t>(counts_[i] * scale + 0.5);
    }
    if (o.coactivation_pairs > 0) {
      r.coactivation_sample_every = static_cast<uint32_t>(o.coactivation_sample_every);
      r.coactivation_max_pairs = static_cast<uint32_t>(o.coactivation_pairs);
      for (int l = 0; l < o.num_layers; ++l) {
        const auto& c = fleet_.coactivation.at({phase, l});
        if (!c.pairs.empty()) r.coactivation.push_back(c);
      }
    }
    AddTraffic(&r);
    ++reports_;
    const std::string frame = EncodeFrame(r);
    Bump([n = frame.size()](SimAgentStats& s) {
      ++s.reports_sent;
      s.report_bytes = n;
    });
    WriteFrame(frame);
  }

  double NominalSteps() const { return opt().steps_per_second * report_ms_ / 1000.0; }

  // This agent's counts for `phase` ([layer][expert], one nominal report's steps), and the
  // phase's co-activation for the fleet if no agent has built it yet.
  void DrawCounts(int64_t phase) {
    const SimAgentOptions& o = opt();
    counts_phase_ = phase;
    counts_.assign(static_cast<size_t>(o.num_layers) * o.num_experts, 0);
    // Expected (token, expert) pairs per expert: Zipf over a rotated order, scaled to the batch.
    const double assignments =
        NominalSteps() * o.tokens_per_step * o.top_k * o.topology.gpus_per_node;
    for (int l = 0; l < o.num_layers; ++l) {
      std::vector<double> share(o.num_experts);
      if (!o.phase_loads.empty()) {
        const auto& loads = o.phase_loads[phase % o.phase_loads.size()];
        share = loads[l % loads.size()];
      } else {
        for (int e = 0; e < o.num_experts; ++e) {
          const int rank = static_cast<int>((e * 37 + l * 11 + phase * 7) % o.num_experts);
          share[e] = std::pow(rank + 1.0, -o.zipf_skew);
        }
      }
      double norm = 0;
      for (double v : share) norm += v;
      for (int e = 0; e < o.num_experts; ++e) {
        const double mean = norm > 0 ? assignments * share[e] / norm : 0;
        std::poisson_distribution<uint32_t> noise(std::max(mean, 1e-9));
        counts_[static_cast<size_t>(l) * o.num_experts + e] = noise(rng_);
      }
      if (!fleet_.coactivation.contains({phase, l})) {
        fleet_.coactivation[{phase, l}] =
            MakeCoactivation(o, l, share, norm, assignments / o.top_k);
      }
    }
  }

  template <typename F>
  void Bump(F f) {
    std::lock_guard<std::mutex> lock(fleet_.mu);
    f(fleet_.stats);
  }

  Impl& fleet_;
  int node_;
  AsyncAgentChannel channel_;
  asio::steady_timer timer_;
  std::mt19937_64 rng_;
  std::array<char, 64 * 1024> buf_{};
  FrameDecoder decoder_;
  std::deque<std::string> out_;
  Epoch epoch_ = 0;
  uint32_t report_ms_ = fleet_.options.report_ms;
  uint32_t heartbeat_ms_ = 500;
  uint64_t last_report_step_ = 0;
  uint64_t reports_ = 0;
  int64_t counts_phase_ = -1;
  std::vector<double> counts_;  // DrawCounts
  std::chrono::steady_clock::time_point last_report_{};
  std::optional<Commit> pending_commit_;
};

void SimAgentFleet::Impl::ConnectFrom(size_t first) {
  const double rate = options.connects_per_second;
  const size_t batch =
      rate <= 0 ? agents.size() : std::max<size_t>(1, static_cast<size_t>(rate / 100));
  const size_t end = std::min(agents.size(), first + batch);
  for (size_t i = first; i < end; ++i) agents[i]->Start();
  if (end == agents.size()) return;
  connect_timer.expires_after(std::chrono::milliseconds(10));
  connect_timer.async_wait([this, end](boost::system::error_code ec) {
    if (!ec) ConnectFrom(end);
  });
}

SimAgentFleet::SimAgentFleet(SimAgentOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
SimAgentFleet::~SimAgentFleet() {
  Stop();
}

Status SimAgentFleet::Start() {
  GRACE_RETURN_IF_ERROR(impl_->options.topology.Validate());
  for (const auto& phase : impl_->options.phase_loads) {
    for (const auto& layer : phase) {
      if (static_cast<int>(layer.size()) != impl_->options.num_experts) {
        return InvalidArgument("sim agents: a phase load has " + std::to_string(layer.size()) +
                               " experts, expected " + std::to_string(impl_->options.num_experts));
      }
    }
  }
  if (impl_->options.tls == AgentChannelTls::kPsk) {
    GRACE_ASSIGN_OR_RETURN(impl_->tls,
                           AgentChannelTlsContext::Make(AgentChannelTlsContext::Role::kClient,
                                                        impl_->options.cluster_secret));
  }
  impl_->start = std::chrono::steady_clock::now();
  impl_->options.report_ms = std::max<uint32_t>(impl_->options.report_ms, 1);
  for (int n = 0; n < impl_->options.topology.nodes; ++n) {
    impl_->agents.push_back(std::make_shared<Impl::Agent>(*impl_, n));
  }
  impl_->ConnectFrom(0);
  impl_->thread = std::thread([this] {
    auto guard = asio::make_work_guard(impl_->io);
    impl_->io.run();
  });
  return Status::Ok();
}

void SimAgentFleet::Stop() {
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->agents.clear();
}

SimAgentStats SimAgentFleet::Stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->stats;
}

}  // namespace grace
