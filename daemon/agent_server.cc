// Boost.Asio implementation of AgentServer: one I/O thread, one Session per connection, each
// over an AsyncAgentChannel (tls/async_agent_channel.h: plaintext or TLS-PSK). This file is
// where Asio's errors become log lines and Status values.
#include "daemon/agent_server.h"

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "tls/async_agent_channel.h"

namespace grace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {
int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

Status ValidateAgentId(std::string_view id) {
  auto allowed = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '@' || c == '-';
  };
  if (id.empty() || id.size() > 64 || !std::all_of(id.begin(), id.end(), allowed)) {
    return InvalidArgument("agent id must be 1-64 characters of [A-Za-z0-9._:@-] (got " +
                           std::to_string(id.size()) + " bytes)");
  }
  return Status::Ok();
}

class AgentServer::Impl {
 public:
  class Session;

  Impl(AgentEvents& events, AgentServerOptions options)
      : events_(events),
        options_(std::move(options)),
        acceptor_(io_),
        sweep_(io_),
        accept_retry_(io_),
        refusal_window_start_(Clock::now()) {}

  Status Start() {
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(options_.host, ec);
    if (ec) return InvalidArgument("agents address '" + options_.host + "': " + ec.message());
    tcp::endpoint endpoint(address, static_cast<unsigned short>(options_.port));
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Unavailable("cannot listen for agents on " + options_.host + ":" +
                         std::to_string(options_.port) + ": " + ec.message());
    }
    port_ = acceptor_.local_endpoint().port();
    if (options_.tls == AgentChannelTls::kPsk) {
      // One context for every connection: the key is derived once, here.
      auto tls = AgentChannelTlsContext::Make(AgentChannelTlsContext::Role::kServer,
                                              options_.cluster_secret);
      if (!tls.ok()) return tls.status().WithContext("[agents] tls = \"psk\"");
      tls_ = std::move(tls).value();
    }
    Accept();
    Sweep();
    thread_ = std::thread([this] { io_.run(); });
    return Status::Ok();
  }

  void Stop() {
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

  void Accept();
  void Sweep();
  // Every heartbeat_ms, a Heartbeat to each joined agent with nothing else on its way, so that
  // an agent hears from graced at least that often and can tell a silent (half-open)
  // connection from a quiet one (I/O thread).
  void SendKeepalives();
  void Joined(const std::shared_ptr<Session>& s);
  void Closed(Session* s, const std::string& reason);
  // A stranger's connection refused: reported unless over refusals_per_minute (I/O thread).
  void Refuse(const std::string& peer, const std::string& reason);
  void ReportSuppressedRefusals();

  AgentEvents& events_;
  AgentServerOptions options_;
  std::shared_ptr<const AgentChannelTlsContext> tls_;  // null: [agents] tls = "off"
  asio::io_context io_;
  tcp::acceptor acceptor_;
  asio::steady_timer sweep_;
  asio::steady_timer accept_retry_;
  std::thread thread_;
  int port_ = 0;

  // I/O thread only: connections that have not proved the secret, oldest first.
  std::map<uint64_t, std::weak_ptr<Session>> pending_;
  uint64_t next_session_ = 0;
  Clock::time_point next_keepalive_{};
  Clock::time_point refusal_window_start_;
  uint32_t refusals_in_window_ = 0;
  uint64_t refusals_suppressed_ = 0;
  std::string last_suppressed_;

  mutable std::mutex mu_;  // guards sessions_ and lost_ (mutated on the I/O thread only)
  std::map<std::string, std::shared_ptr<Session>> sessions_;
  std::map<std::string, AgentStatus> lost_;
};

class AgentServer::Impl::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Impl& server, tcp::socket socket, uint64_t id)
      : server_(server),
        channel_(std::move(socket), server.tls_),
        decoder_(server.options_.max_handshake_frame_bytes),
        last_seen_(Clock::now()),
        id_(id) {
    boost::system::error_code ec;
    auto remote = channel_.socket().remote_endpoint(ec);
    peer_ =
        ec ? "unknown peer" : remote.address().to_string() + ":" + std::to_string(remote.port());
  }

  // The TLS handshake (nothing with tls = "off"), then the protocol's: Challenge first. Both
  // count against handshake_timeout_ms (Sweep).
  void Start() {
    auto self = shared_from_this();
    channel_.AsyncStart([self](const Status& s) {
      if (self->closed_) return;
      if (!s.ok()) {
        self->server_.Refuse(self->peer_, s.message());
        return self->Close(s.message());
      }
      RAND_bytes(self->challenge_.nonce.data(), static_cast<int>(self->challenge_.nonce.size()));
      self->Write(EncodeFrame(self->challenge_));
      self->Read();
    });
  }

  void Write(std::string frame) {
    const bool idle = out_.empty();
    out_.push_back(std::move(frame));
    if (idle) WriteNext();
  }

  void Close(const std::string& reason) {
    if (closed_) return;
    closed_ = true;
    channel_.Close();
    server_.Closed(this, reason);
  }

  uint64_t id() const { return id_; }
  Clock::time_point connected_at() const { return connected_at_; }
  bool joined() const { return joined_; }
  bool left() const { return left_; }
  bool closed() const { return closed_; }
  const std::string& peer() const { return peer_; }
  Clock::time_point last_seen() const { return last_seen_; }
  // Nothing queued for the agent: a keepalive would be the only bytes on their way.
  bool write_idle() const { return out_.empty(); }
  AgentStatus status;  // guarded by server_.mu_ once joined

 private:
  void Read() {
    auto self = shared_from_this();
    channel_.AsyncReadSome(buffer_.data(), buffer_.size(), [self](const Status& s, size_t n) {
      if (self->closed_) return;
      if (!s.ok()) {
        // A TLS record that fails its check: bytes injected or changed on the path.
        if (s.code() == StatusCode::kDataLoss) {
          if (self->joined_) {
            self->server_.events_.OnConnectionRejected(self->peer_, s.message());
          } else {
            self->server_.Refuse(self->peer_, s.message());
          }
        }
        return self->Close(s.message());
      }
      self->last_seen_ = Clock::now();
      const std::string_view bytes(self->buffer_.data(), n);
      if (!self->received_any_ && !self->channel_.tls() && StartsWithTlsRecord(bytes)) {
        const std::string why = AgentSpeaksTls().message();
        self->server_.Refuse(self->peer_, why);
        return self->Close(why);
      }
      self->received_any_ = true;
      self->decoder_.Append(bytes);
      while (!self->closed_) {
        WireMessage m;
        StatusOr<bool> more = self->decoder_.Next(&m);
        if (!more.ok()) {
          if (self->joined_) {
            self->server_.events_.OnConnectionRejected(self->peer_, more.status().message());
          } else {
            self->server_.Refuse(self->peer_, more.status().message());
          }
          return self->Close("bad frame: " + more.status().message());
        }
        if (!*more) break;
        self->Handle(m);
      }
      if (!self->closed_) self->Read();
    });
  }

  void WriteNext() {
    auto self = shared_from_this();
    channel_.AsyncWrite(out_.front(), [self](const Status& s) {
      if (self->closed_) return;
      if (!s.ok()) return self->Close("write: " + s.message());
      self->out_.pop_front();
      if (!self->out_.empty()) self->WriteNext();
    });
  }

  void Handle(const WireMessage& m) {
    if (!joined_) {
      const Hello* hello = std::get_if<Hello>(&m);
      if (hello == nullptr) {
        Reject(std::string("expected Hello first, got ") + MessageTypeName(TypeOf(m)));
        return;
      }
      // Checked first: nothing the peer chose is logged or stored before it is known printable.
      if (Status valid = ValidateAgentId(hello->agent_id); !valid.ok()) {
        Reject(valid.message());
        return;
      }
      if (!ProofsEqual(hello->proof,
                       ProveSecret(server_.options_.cluster_secret, challenge_.nonce))) {
        Reject("agent '" + hello->agent_id + "' failed the cluster-secret proof");
        return;
      }
      StatusOr<Welcome> welcome = server_.events_.OnAgentJoined(*hello);
      if (!welcome.ok()) {
        Reject("agent '" + hello->agent_id + "' refused: " + welcome.status().message());
        return;
      }
      if (hello->daemon_nonce) {
        welcome->daemon_proof = ProveSecret(server_.options_.cluster_secret, *hello->daemon_nonce);
      }
      welcome->heartbeat_ms = server_.options_.heartbeat_ms;
      welcome->report_ms = server_.options_.report_ms;
      joined_ = true;
      decoder_.set_max_payload_bytes(server_.options_.max_frame_bytes);
      buffer_.resize(64 * 1024);
      status.agent_id = hello->agent_id;
      status.node = hello->node;
      status.ranks = hello->ranks;
      status.state = "up";
      status.epoch = hello->epoch;
      status.last_seen_ms = NowMs();
      // Registered before the Welcome goes out: an agent that has its Welcome is listed.
      server_.Joined(shared_from_this());
      Write(EncodeFrame(*welcome));
      return;
    }
    if (!StepPlausible(m)) return;
    {
      std::lock_guard<std::mutex> lock(server_.mu_);
      status.last_seen_ms = NowMs();
      if (const Heartbeat* hb = std::get_if<Heartbeat>(&m)) {
        status.step = hb->step;
        status.epoch = hb->epoch;
      } else if (const Switched* sw = std::get_if<Switched>(&m)) {
        status.epoch = sw->epoch;
      } else if (std::holds_alternative<Goodbye>(m)) {
        left_ = true;  // its close is listed as "left", not "lost"
      }
    }
    server_.events_.OnMessage(status.agent_id, m);
  }

  // False (and logged, sparingly) when `m` carries a step further ahead than max_steps_per_s
  // allows since this connection's last step. The first step of a connection is its baseline:
  // after a restart of graced or of other agents, steps across agents need not agree.
  bool StepPlausible(const WireMessage& m) {
    uint64_t step;
    if (const Heartbeat* hb = std::get_if<Heartbeat>(&m)) {
      step = hb->step;
    } else if (const LoadReport* r = std::get_if<LoadReport>(&m)) {
      step = std::max(r->step_from, r->step_to);
    } else if (const Switched* sw = std::get_if<Switched>(&m)) {
      step = sw->step;
    } else {
      return true;
    }
    const auto now = Clock::now();
    const uint64_t rate = server_.options_.max_steps_per_s;
    if (has_step_) {
      const uint64_t base = last_step_;
      const double seconds = std::chrono::duration<double>(now - last_step_at_).count() + 1.0;
      const double allowed = static_cast<double>(rate) * seconds;
      if (step > base && static_cast<double>(step - base) > allowed) {
        if (refused_frames_++ % 1000 == 0) {
          spdlog::warn(
              "graced: {} from agent {} refused: step {} is {} past step {}, more than {} "
              "steps/s allow ({} refused so far)",
              MessageTypeName(TypeOf(m)), status.agent_id, step, step - base, base, rate,
              refused_frames_);
        }
        server_.events_.OnFrameRefused(status.agent_id, FrameRefusal::kStepBeyondRate);
        return false;
      }
    }
    if (!has_step_ || step > last_step_) {
      last_step_ = step;
      last_step_at_ = now;
      has_step_ = true;
    }
    return true;
  }

  void Reject(const std::string& reason) {
    server_.Refuse(peer_, reason);
    // Best effort and without waiting: tell the agent why, then close.
    channel_.WriteBestEffort(EncodeFrame(Refused{reason}));
    Close(reason);
  }

  Impl& server_;
  AsyncAgentChannel channel_;
  FrameDecoder decoder_;
  // Small while the peer is a stranger (hundreds may be open), 64 KiB once it proved itself.
  std::vector<char> buffer_ = std::vector<char>(4 * 1024);
  std::deque<std::string> out_;
  Challenge challenge_;
  Clock::time_point last_seen_;
  std::string peer_;
  uint64_t id_;
  Clock::time_point connected_at_ = Clock::now();
  bool joined_ = false;
  bool received_any_ = false;
  bool left_ = false;
  bool closed_ = false;
  bool has_step_ = false;
  uint64_t last_step_ = 0;
  Clock::time_point last_step_at_;
  uint64_t refused_frames_ = 0;
};

void AgentServer::Impl::Accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (!acceptor_.is_open()) return;
    if (ec) {
      // Out of descriptors (EMFILE) or similar: retrying at once would spin the I/O thread.
      accept_retry_.expires_after(std::chrono::milliseconds(50));
      accept_retry_.async_wait([this](boost::system::error_code e) {
        if (!e) Accept();
      });
      return;
    }
    if (pending_.size() >= std::max<uint32_t>(1, options_.max_pending)) {
      // The oldest stranger makes room: a flood of idle connections cannot lock a real agent out.
      std::shared_ptr<Session> oldest = pending_.begin()->second.lock();
      pending_.erase(pending_.begin());
      if (oldest && !oldest->closed()) {
        Refuse(oldest->peer(), "dropped: over " + std::to_string(options_.max_pending) +
                                   " connections awaiting the handshake");
        oldest->Close("dropped for a newer connection");
      }
    }
    auto session = std::make_shared<Session>(*this, std::move(socket), next_session_++);
    pending_.emplace(session->id(), session);
    session->Start();
    Accept();
  });
}

void AgentServer::Impl::Refuse(const std::string& peer, const std::string& reason) {
  if (refusals_in_window_ < options_.refusals_per_window) {
    ++refusals_in_window_;
    events_.OnConnectionRejected(peer, reason);
    return;
  }
  ++refusals_suppressed_;
  last_suppressed_ = peer + ": " + reason;
}

void AgentServer::Impl::ReportSuppressedRefusals() {
  if (Clock::now() - refusal_window_start_ <
      std::chrono::milliseconds(options_.refusal_window_ms)) {
    return;
  }
  if (refusals_suppressed_ > 0) {
    events_.OnConnectionRejected("several peers",
                                 std::to_string(refusals_suppressed_) +
                                     " more connections refused in the last " +
                                     std::to_string(options_.refusal_window_ms / 1000) +
                                     " s; the last from " + last_suppressed_);
  }
  refusal_window_start_ = Clock::now();
  refusals_in_window_ = 0;
  refusals_suppressed_ = 0;
}

void AgentServer::Impl::Sweep() {
  sweep_.expires_after(
      std::chrono::milliseconds(std::max<uint32_t>(10, options_.heartbeat_ms / 2)));
  sweep_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    const auto limit = std::chrono::milliseconds(options_.lost_after_ms);
    std::vector<std::shared_ptr<Session>> silent;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [id, s] : sessions_) {
        if (Clock::now() - s->last_seen() > limit) silent.push_back(s);
      }
    }
    for (auto& s : silent) {
      s->Close("silent for more than " + std::to_string(options_.lost_after_ms) + " ms");
    }
    SendKeepalives();
    // Strangers that have not proved the secret in time; pending_ is ordered oldest first.
    const auto handshake = std::chrono::milliseconds(options_.handshake_timeout_ms);
    std::vector<std::shared_ptr<Session>> late;
    for (auto& [id, weak] : pending_) {
      std::shared_ptr<Session> s = weak.lock();
      if (s && Clock::now() - s->connected_at() <= handshake) break;
      if (s) late.push_back(std::move(s));
    }
    for (auto& s : late) {
      Refuse(s->peer(),
             "no proven Hello within " + std::to_string(options_.handshake_timeout_ms) + " ms");
      s->Close("handshake timeout");
    }
    ReportSuppressedRefusals();
    Sweep();
  });
}

void AgentServer::Impl::SendKeepalives() {
  const auto now = Clock::now();
  if (now < next_keepalive_) return;
  next_keepalive_ = now + std::chrono::milliseconds(options_.heartbeat_ms);
  std::vector<std::pair<std::shared_ptr<Session>, Heartbeat>> idle;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, s] : sessions_) {
      // The agent's own last step and epoch, echoed: the agent reads a daemon's Heartbeat for
      // its arrival only.
      if (s->write_idle()) idle.emplace_back(s, Heartbeat{s->status.step, s->status.epoch});
    }
  }
  for (auto& [s, hb] : idle) {
    if (!s->closed()) s->Write(EncodeFrame(hb));
  }
}

void AgentServer::Impl::Joined(const std::shared_ptr<Session>& s) {
  pending_.erase(s->id());
  std::shared_ptr<Session> previous;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(s->status.agent_id);
    if (it != sessions_.end()) previous = it->second;
    sessions_[s->status.agent_id] = s;
    lost_.erase(s->status.agent_id);
  }
  // A reconnecting agent replaces its old connection.
  if (previous && !previous->closed()) previous->Close("replaced by a new connection");
}

void AgentServer::Impl::Closed(Session* s, const std::string& reason) {
  pending_.erase(s->id());
  if (!s->joined()) return;
  bool was_current = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(s->status.agent_id);
    if (it != sessions_.end() && it->second.get() == s) {
      sessions_.erase(it);
      AgentStatus lost = s->status;
      lost.state = s->left() ? "left" : "lost";
      lost_[lost.agent_id] = lost;
      was_current = true;
    }
  }
  if (was_current) events_.OnAgentLost(s->status.agent_id, reason);
}

AgentServer::AgentServer(AgentEvents& events, AgentServerOptions options)
    : impl_(std::make_unique<Impl>(events, std::move(options))) {}
AgentServer::~AgentServer() {
  Stop();
}
Status AgentServer::Start() {
  return impl_->Start();
}
void AgentServer::Stop() {
  impl_->Stop();
}
int AgentServer::port() const {
  return impl_->port_;
}

bool AgentServer::Send(const std::string& agent_id, const WireMessage& message) {
  std::shared_ptr<Impl::Session> s;
  {
    std::lock_guard<std::mutex> lock(impl_->mu_);
    auto it = impl_->sessions_.find(agent_id);
    if (it == impl_->sessions_.end()) return false;
    s = it->second;
  }
  asio::post(impl_->io_, [s, frame = EncodeFrame(message)]() mutable {
    if (!s->closed()) s->Write(std::move(frame));
  });
  return true;
}

void AgentServer::Broadcast(const WireMessage& message) {
  std::vector<std::string> ids;
  {
    std::lock_guard<std::mutex> lock(impl_->mu_);
    for (const auto& [id, s] : impl_->sessions_) ids.push_back(id);
  }
  for (const std::string& id : ids) Send(id, message);
}

std::vector<AgentStatus> AgentServer::Agents() const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  std::vector<AgentStatus> out;
  for (const auto& [id, s] : impl_->sessions_) out.push_back(s->status);
  for (const auto& [id, a] : impl_->lost_) out.push_back(a);
  return out;
}

}  // namespace grace
