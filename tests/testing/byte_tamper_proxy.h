// ByteTamperProxy: a loopback TCP relay that changes one byte in flight or writes bytes of its
// own onto the path, as an attacker on it would, for tests of what a receiver does with data
// corrupted or injected on the path (the migration mesh's weight digests,
// migrate/weight_digest.h; the agent channel's TLS). It understands nothing it relays. Each route
// listens on one loopback port and relays every accepted connection to 127.0.0.1:upstream, both
// ways, byte for byte, except that the byte at offset `flip_offset` of the upstream -> client
// direction is XORed with 0x5A, once over all routes and connections (the first stream to reach
// that offset); every later byte and connection is relayed unchanged (kNoFlip: none).
// InjectUpstream writes bytes towards the upstream of the newest connection, between the client's
// own. Blackhole() makes every connection open at that moment half-open, as a lost host or a
// dropped route would: its bytes are read and dropped both ways, and neither end sees a close;
// later connections relay normally. A connection is accepted at once and its upstream dialled
// (retried for up to 10 s while the upstream does not listen yet, as its client would have
// retried).
//
//   ByteTamperProxy proxy({{client_port, upstream_port}}, /*flip_offset=*/4096);
//   ASSERT_TRUE(proxy.Start().ok());
//   ... run; proxy.tampered() says whether the byte was changed.
//
// Thread contract: one accept thread, one thread per relayed connection; tampered() may be read
// from any thread. Stop() (or the destructor) joins them.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/status.h"

namespace grace::testing {

class ByteTamperProxy {
 public:
  struct Route {
    int listen_port = 0;
    int upstream_port = 0;
  };

  static constexpr uint64_t kNoFlip = ~uint64_t{0};

  ByteTamperProxy(std::vector<Route> routes, uint64_t flip_offset)
      : routes_(std::move(routes)), flip_offset_(flip_offset) {}
  ~ByteTamperProxy() { Stop(); }
  ByteTamperProxy(const ByteTamperProxy&) = delete;
  ByteTamperProxy& operator=(const ByteTamperProxy&) = delete;

  Status Start() {
    for (const Route& r : routes_) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      int one = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      sockaddr_in a = Loopback(r.listen_port);
      if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 64) != 0) {
        const std::string why = std::strerror(errno);
        ::close(fd);
        return Unavailable("tamper proxy: listen on port " + std::to_string(r.listen_port) + ": " +
                           why);
      }
      listeners_.push_back({fd, r.upstream_port});
    }
    accept_thread_ = std::thread([this] { AcceptLoop(); });
    return Status::Ok();
  }

  void Stop() {
    if (stopping_.exchange(true)) return;
    if (accept_thread_.joinable()) accept_thread_.join();
    for (const auto& l : listeners_) ::close(l.first);
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      threads.swap(threads_);
    }
    for (std::thread& t : threads) t.join();
  }

  bool tampered() const { return tampered_.load(); }

  void Blackhole() { blackhole_below_.store(accepted_.load()); }

  // Writes `bytes` to the upstream of the newest relayed connection; false when none is open
  // or the write fell short.
  bool InjectUpstream(const std::string& bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    if (newest_upstream_ < 0) return false;
    return ::send(newest_upstream_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }

 private:
  static sockaddr_in Loopback(int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    return a;
  }

  void AcceptLoop() {
    std::vector<pollfd> polls;
    for (const auto& l : listeners_) polls.push_back({l.first, POLLIN, 0});
    while (!stopping_.load()) {
      if (::poll(polls.data(), polls.size(), 20) <= 0) continue;
      for (size_t i = 0; i < polls.size(); ++i) {
        if ((polls[i].revents & POLLIN) == 0) continue;
        const int client = ::accept4(polls[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) continue;
        const int upstream_port = listeners_[i].second;
        const uint64_t number = accepted_.fetch_add(1);
        std::lock_guard<std::mutex> lock(mu_);
        threads_.emplace_back([this, client, upstream_port, number] {
          const int upstream = ConnectUpstream(upstream_port);
          if (upstream < 0) {
            ::close(client);
            return;
          }
          int one = 1;
          ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          ::setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          {
            std::lock_guard<std::mutex> lock(mu_);
            newest_upstream_ = upstream;
          }
          Relay(client, upstream, number);
        });
      }
    }
  }

  // A client may connect before its peer listens (a mesh rank retries until its peer is up): the
  // proxy, which accepted at once, retries for up to 10 s in its stead. -1 when it never got in.
  int ConnectUpstream(int port) {
    for (int i = 0; i < 500 && !stopping_.load(); ++i) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a = Loopback(port);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return fd;
      ::close(fd);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

  // Relays both ways until either end closes (then closes both) or the proxy stops; connection
  // `number` drops what it reads once Blackhole() covers it.
  void Relay(int client, int upstream, uint64_t number) {
    uint64_t down_offset = 0;  // bytes relayed upstream -> client
    std::array<char, 64 * 1024> buf;
    bool open = true;
    while (open && !stopping_.load()) {
      pollfd p[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
      if (::poll(p, 2, 20) <= 0) continue;
      for (int i = 0; i < 2 && open; ++i) {
        if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        const ssize_t n = ::recv(p[i].fd, buf.data(), buf.size(), 0);
        if (n <= 0) {
          open = false;
          break;
        }
        if (number < blackhole_below_.load()) continue;
        if (i == 1) {
          const uint64_t end = down_offset + static_cast<uint64_t>(n);
          if (flip_offset_ >= down_offset && flip_offset_ < end && !tampered_.exchange(true)) {
            buf[flip_offset_ - down_offset] ^= 0x5A;
          }
          down_offset = end;
        }
        open = SendAll(i == 0 ? upstream : client, buf.data(), static_cast<size_t>(n));
      }
    }
    ::shutdown(client, SHUT_RDWR);
    ::shutdown(upstream, SHUT_RDWR);
    ::close(client);
    std::lock_guard<std::mutex> lock(mu_);
    if (newest_upstream_ == upstream) newest_upstream_ = -1;
    ::close(upstream);
  }

  // Writes all of `data` unless the peer goes or the proxy stops (never blocks past 20 ms).
  bool SendAll(int fd, const char* data, size_t n) {
    while (n > 0 && !stopping_.load()) {
      const ssize_t k = ::send(fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        pollfd p{fd, POLLOUT, 0};
        ::poll(&p, 1, 20);
        continue;
      }
      if (k <= 0) return false;
      data += k;
      n -= static_cast<size_t>(k);
    }
    return n == 0;
  }

  std::vector<Route> routes_;
  const uint64_t flip_offset_;
  std::vector<std::pair<int, int>> listeners_;  // fd, upstream port
  std::atomic<bool> stopping_{false};
  std::atomic<bool> tampered_{false};
  std::atomic<uint64_t> accepted_{0};         // connections accepted so far
  std::atomic<uint64_t> blackhole_below_{0};  // connections numbered below this drop bytes
  std::thread accept_thread_;
  std::mutex mu_;
  std::vector<std::thread> threads_;  // guarded by mu_
  int newest_upstream_ = -1;          // guarded by mu_
};

}  // namespace grace::testing
