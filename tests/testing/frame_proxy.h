// FrameProxy: a deterministic fault injector between grace-agents and their daemon. It listens
// on a loopback port (the agents' [daemon].address), connects each accepted connection to the
// daemon's port, and forwards whole wire frames (core/wire_protocol.h) both ways, applying
// rules keyed by direction, message type, agent and occurrence:
//
//   FrameProxy proxy(daemon.port());
//   ASSERT_TRUE(proxy.Start().ok());                       // agents dial proxy.port()
//   proxy.AddRule({.to_agent = true, .type = MessageType::kCommit, .agent = "agent2",
//                  .action = FrameProxy::Action::kDrop});  // agent2 never sees COMMIT
//
// kDelay holds the frame, and every later frame of that direction (TCP keeps order), for
// delay_ms, or until Release() when delay_ms < 0; kDrop swallows the frame; kCut closes the
// connection (both ends) instead of forwarding it. Each rule fires once, on its nth match.
// The agent of a connection is read from its Hello. Cut() closes connections on demand, and
// SetUpstream() points new connections at a restarted daemon.
//
// Thread contract: one accept thread and one thread per connection; every method may be called
// from any thread.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "core/wire_protocol.h"

namespace grace::testing {

class FrameProxy {
 public:
  enum class Action { kDelay, kDrop, kCut };
  struct Rule {
    bool to_agent = true;  // daemon -> agent; false: agent -> daemon
    MessageType type = MessageType::kCommit;
    std::string agent;  // empty: any agent
    int nth = 1;        // fires on the nth matching frame
    Action action = Action::kDelay;
    int delay_ms = -1;  // kDelay: < 0 holds until Release()
  };

  explicit FrameProxy(int upstream_port) : upstream_port_(upstream_port) {}
  ~FrameProxy() { Stop(); }
  FrameProxy(const FrameProxy&) = delete;
  FrameProxy& operator=(const FrameProxy&) = delete;

  Status Start() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_, 64) != 0) {
      return Unavailable(std::string("proxy: bind/listen: ") + std::strerror(errno));
    }
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    accept_thread_ = std::thread([this] { AcceptLoop(); });
    return Status::Ok();
  }

  void Stop() {
    if (stopping_.exchange(true)) return;
    if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
    if (accept_thread_.joinable()) accept_thread_.join();
    if (listen_fd_ >= 0) ::close(listen_fd_);
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      threads.swap(threads_);
    }
    for (std::thread& t : threads) t.join();
  }

  int port() const { return port_; }
  void SetUpstream(int port) { upstream_port_.store(port); }

  void AddRule(const Rule& r) {
    std::lock_guard<std::mutex> lock(mu_);
    rules_.push_back({r, 0, false});
  }
  // How many rules have fired.
  int fired() {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (const RuleState& r : rules_) n += r.fired;
    return n;
  }
  // Lets held frames go.
  void Release() { release_generation_.fetch_add(1); }
  // Closes the connections of `agent` (every connection when empty).
  void Cut(const std::string& agent = "") {
    std::lock_guard<std::mutex> lock(mu_);
    cut_requests_.push_back(agent);
    ++cut_generation_;
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct RuleState {
    Rule rule;
    int seen = 0;
    bool fired = false;
  };
  struct Held {
    Clock::time_point due;
    uint64_t release_generation;  // < 0 delays: released once the generation moves past it
    bool until_release;
    std::string bytes;
  };
  struct Direction {
    int from = -1, to = -1;
    bool to_agent = true;
    std::string in;        // bytes not yet a whole frame
    std::deque<Held> out;  // frames in order, each forwarded once due
    std::string writing;   // a frame being written
  };

  void AcceptLoop() {
    while (!stopping_.load()) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int agent_fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (agent_fd < 0) continue;
      const int daemon_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<uint16_t>(upstream_port_.load()));
      if (::connect(daemon_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(agent_fd);
        ::close(daemon_fd);
        continue;
      }
      int one = 1;
      ::setsockopt(agent_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      ::setsockopt(daemon_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::lock_guard<std::mutex> lock(mu_);
      threads_.emplace_back([this, agent_fd, daemon_fd] { Serve(agent_fd, daemon_fd); });
    }
  }

  // Applies the rules to one whole frame; returns false when the connection is to be cut.
  bool Route(Direction& d, const std::string& agent, std::string frame) {
    uint16_t type = 0;
    std::memcpy(&type, frame.data() + 6, sizeof type);
    Held h{Clock::now(), 0, false, std::move(frame)};
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (RuleState& r : rules_) {
        if (r.fired || r.rule.to_agent != d.to_agent ||
            static_cast<uint16_t>(r.rule.type) != type ||
            (!r.rule.agent.empty() && r.rule.agent != agent)) {
          continue;
        }
        if (++r.seen != r.rule.nth) continue;
        r.fired = true;
        if (r.rule.action == Action::kDrop) return true;
        if (r.rule.action == Action::kCut) return false;
        h.until_release = r.rule.delay_ms < 0;
        h.release_generation = release_generation_.load();
        h.due = Clock::now() + std::chrono::milliseconds(std::max(0, r.rule.delay_ms));
      }
    }
    d.out.push_back(std::move(h));
    return true;
  }

  bool Due(const Held& h) const {
    if (h.until_release) return release_generation_.load() > h.release_generation;
    return Clock::now() >= h.due;
  }

  // Sends what is due, in order; false when the peer is gone.
  bool Flush(Direction& d) {
    while (true) {
      if (d.writing.empty()) {
        if (d.out.empty() || !Due(d.out.front())) return true;
        d.writing = std::move(d.out.front().bytes);
        d.out.pop_front();
      }
      const ssize_t n =
          ::send(d.to, d.writing.data(), d.writing.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
      d.writing.erase(0, static_cast<size_t>(n));
      if (!d.writing.empty()) return true;
    }
  }

  void Serve(int agent_fd, int daemon_fd) {
    Direction down{daemon_fd, agent_fd, true, {}, {}, {}};
    Direction up{agent_fd, daemon_fd, false, {}, {}, {}};
    std::string agent;
    uint64_t cuts_seen = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cuts_seen = cut_generation_;
    }
    bool alive = true;
    char buf[64 << 10];
    while (alive && !stopping_.load()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (uint64_t i = cuts_seen; i < cut_generation_; ++i) {
          const std::string& who = cut_requests_[i];
          if (who.empty() || who == agent) alive = false;
        }
        cuts_seen = cut_generation_;
      }
      if (!alive) break;
      pollfd p[2] = {{daemon_fd, POLLIN, 0}, {agent_fd, POLLIN, 0}};
      ::poll(p, 2, 2);
      for (int i = 0; i < 2 && alive; ++i) {
        if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        Direction& d = i == 0 ? down : up;
        const ssize_t n = ::recv(d.from, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
          alive = false;
          break;
        }
        if (n < 0) continue;
        d.in.append(buf, static_cast<size_t>(n));
        while (alive && d.in.size() >= kFrameHeaderBytes) {
          uint32_t len = 0;
          std::memcpy(&len, d.in.data() + 8, sizeof len);
          if (d.in.size() < kFrameHeaderBytes + len) break;
          std::string frame = d.in.substr(0, kFrameHeaderBytes + len);
          d.in.erase(0, kFrameHeaderBytes + len);
          if (!d.to_agent && agent.empty()) {
            uint16_t type = 0;
            std::memcpy(&type, frame.data() + 6, sizeof type);
            if (type == static_cast<uint16_t>(MessageType::kHello)) {
              StatusOr<WireMessage> m = DecodePayload(
                  MessageType::kHello, std::string_view(frame).substr(kFrameHeaderBytes));
              if (m.ok()) agent = std::get<Hello>(*m).agent_id;
            }
          }
          alive = Route(d, agent, std::move(frame));
        }
      }
      alive = alive && Flush(down) && Flush(up);
    }
    ::close(agent_fd);
    ::close(daemon_fd);
  }

  std::atomic<int> upstream_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> release_generation_{0};
  std::thread accept_thread_;
  std::mutex mu_;
  std::vector<std::thread> threads_;
  std::vector<RuleState> rules_;
  std::vector<std::string> cut_requests_;
  uint64_t cut_generation_ = 0;
};

}  // namespace grace::testing
