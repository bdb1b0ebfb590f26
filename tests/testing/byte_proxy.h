// ByteProxy: a TCP relay on loopback between one client and a server that forwards bytes as
// they are and lets a test write its own bytes into the client-to-server direction, as an
// attacker on the path would. Unlike FrameProxy (frame_proxy.h) it understands nothing of what
// it relays, so it works under TLS. One connection at a time; every wait is bounded.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

namespace grace::testing {

class ByteProxy {
 public:
  explicit ByteProxy(int server_port) : server_port_(server_port) {}
  ~ByteProxy() { Stop(); }
  ByteProxy(const ByteProxy&) = delete;
  ByteProxy& operator=(const ByteProxy&) = delete;

  // Listens on a free loopback port (port()) and relays the first connection it accepts.
  bool Start() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return false;
    if (::listen(listen_fd_, 4) != 0) return false;
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Relay(); });
    return true;
  }
  int port() const { return port_; }

  // Writes `bytes` towards the server between the client's own; false before a connection.
  bool InjectToServer(const std::string& bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    if (server_fd_ < 0) return false;
    return ::send(server_fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }

  void Stop() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
    for (int* fd : {&listen_fd_, &client_fd_, &server_fd_}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
  }

 private:
  // Relays until either side closes, then closes the relay towards both, so each peer sees
  // its connection end as it would without the proxy.
  void Relay() {
    Pump();
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : {client_fd_, server_fd_}) {
      if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
    }
  }

  void Pump() {
    while (!stopping_ && client_fd_ < 0) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) > 0) client_fd_ = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    }
    if (stopping_) return;
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(server_port_));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      server_fd_ = fd;
    }
    char buf[16 << 10];
    while (!stopping_) {
      pollfd p[2] = {{client_fd_, POLLIN, 0}, {server_fd_, POLLIN, 0}};
      if (::poll(p, 2, 20) <= 0) continue;
      for (int i = 0; i < 2; ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t n = ::recv(p[i].fd, buf, sizeof buf, 0);
        if (n <= 0) return;
        std::lock_guard<std::mutex> lock(mu_);
        const int to = i == 0 ? server_fd_ : client_fd_;
        if (::send(to, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) return;
      }
    }
  }

  const int server_port_;
  int port_ = 0;
  int listen_fd_ = -1, client_fd_ = -1;
  std::mutex mu_;
  int server_fd_ = -1;  // guarded by mu_ once the relay thread runs
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace grace::testing
