// RawClient: a TCP client socket on loopback for tests that must send what a well-behaved
// client library would not (a partial head, a lying Content-Length, a connection left idle).
// Reads are bounded by a 20 s receive timeout so that a broken server fails a test instead of
// hanging it; no test asserts that time.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace grace::testing {

class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    // A bound on a test that would otherwise hang; no timing is asserted.
    timeval tv{20, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~RawClient() { ::close(fd_); }
  bool connected() const { return connected_; }
  bool Send(const std::string& text) {
    return ::send(fd_, text.data(), text.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(text.size());
  }
  // Everything until the server closes (or the 20 s bound).
  std::string ReadAll() {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd_, buf, sizeof(buf), 0)) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }
  // Reads and drops what comes until the server closes: true at its close, false when the 20 s
  // bound passed first (the server kept the connection).
  bool WaitClosed() {
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd_, buf, sizeof(buf), 0)) > 0) {
    }
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }
  // The status of the first response ("HTTP/1.1 200 OK" -> 200), or 0.
  int ReadStatus() {
    std::string head;
    char c;
    while (head.find("\r\n") == std::string::npos && ::recv(fd_, &c, 1, 0) == 1) head += c;
    return head.size() > 12 ? std::stoi(head.substr(9, 3)) : 0;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

}  // namespace grace::testing
