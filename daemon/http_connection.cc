// HttpConnection's reads and writes (plain, or through its TLS session) and HttpConnectionStream:
// reads from the head the event thread buffered, then from the connection by deadline (poll,
// never select), and gathers the response into large sends.
#include "daemon/http_connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace grace {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Responses are gathered up to this size and sent with one call.
constexpr size_t kWriteChunkBytes = 64 * 1024;

void AddressOf(const sockaddr_storage& addr, std::string& ip, int& port) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(addr);
    ::inet_ntop(AF_INET, &a.sin_addr, text, sizeof(text));
    port = ntohs(a.sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(addr);
    ::inet_ntop(AF_INET6, &a.sin6_addr, text, sizeof(text));
    port = ntohs(a.sin6_port);
  }
  ip = text;
}

// -1 with `*wait` set from a TLS step that moved nothing.
ssize_t Blocked(HttpConnection& c, TlsIo io, short* wait) {
  *wait = io == TlsIo::kWantRead ? POLLIN : io == TlsIo::kWantWrite ? POLLOUT : 0;
  if (*wait == 0) c.tls_over = true;
  return -1;
}

}  // namespace

ssize_t ReceiveSome(HttpConnection& c, char* buf, size_t size, short* wait) {
  *wait = 0;
  if (c.ssl) {
    size_t n = 0;
    const TlsIo io = TlsRead(c.ssl.get(), buf, size, &n);
    if (io == TlsIo::kDone) return static_cast<ssize_t>(n);
    if (io == TlsIo::kClosed) return 0;
    return Blocked(c, io, wait);
  }
  while (true) {
    const ssize_t n = ::recv(c.fd, buf, size, 0);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) *wait = POLLIN;
    return -1;
  }
}

ssize_t SendSome(HttpConnection& c, const char* buf, size_t size, short* wait) {
  *wait = 0;
  if (c.ssl) {
    size_t n = 0;
    const TlsIo io = TlsWrite(c.ssl.get(), buf, size, &n);
    if (io == TlsIo::kDone) return static_cast<ssize_t>(n);
    return Blocked(c, io == TlsIo::kClosed ? TlsIo::kFailed : io, wait);
  }
  while (true) {
    const ssize_t n = ::send(c.fd, buf, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) *wait = POLLOUT;
    return -1;
  }
}

bool HasBufferedInput(const HttpConnection& c) {
  return c.ssl && TlsHasPending(c.ssl.get());
}

void EndTls(HttpConnection& c) {
  if (c.ssl && !c.tls_over && !c.handshaking) TlsClose(c.ssl.get());
  c.tls_over = true;
}

bool WaitFor(int fd, short events, Clock::time_point deadline) {
  while (true) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

HttpConnectionStream::HttpConnectionStream(HttpConnection& c, int body_timeout_ms,
                                           int write_timeout_ms, HttpRequestState& state)
    : c_(c),
      write_timeout_(write_timeout_ms),
      state_(state),
      body_deadline_(Clock::now() + milliseconds(body_timeout_ms)) {}

HttpConnectionStream::~HttpConnectionStream() {
  Flush();
}

bool HttpConnectionStream::is_readable() const {
  return c_.used < c_.in.size() || HasBufferedInput(c_) || WaitFor(c_.fd, POLLIN, body_deadline_);
}

bool HttpConnectionStream::is_writable() const {
  return WaitFor(c_.fd, POLLOUT, Clock::now() + write_timeout_);
}

ssize_t HttpConnectionStream::read(char* ptr, size_t size) {
  if (c_.used < c_.in.size()) {
    const size_t n = std::min(size, c_.in.size() - c_.used);
    std::memcpy(ptr, c_.in.data() + c_.used, n);
    c_.used += n;
    return static_cast<ssize_t>(n);
  }
  while (true) {
    short wait = 0;
    const ssize_t n = ReceiveSome(c_, ptr, size, &wait);
    if (n >= 0) return n;
    if (wait == 0 || !WaitFor(c_.fd, wait, body_deadline_)) break;
  }
  state_.failed = true;
  return -1;
}

ssize_t HttpConnectionStream::write(const char* ptr, size_t size) {
  if (state_.failed) return -1;
  out_.append(ptr, size);
  if (out_.size() >= kWriteChunkBytes && !Flush()) return -1;
  return static_cast<ssize_t>(size);
}

bool HttpConnectionStream::Flush() {
  const auto deadline = Clock::now() + write_timeout_;
  size_t done = 0;
  while (done < out_.size() && !state_.failed) {
    short wait = 0;
    const ssize_t n = SendSome(c_, out_.data() + done, out_.size() - done, &wait);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n == 0 || wait == 0 || !WaitFor(c_.fd, wait, deadline)) {
      state_.failed = true;
    }
  }
  out_.clear();
  return !state_.failed;
}

void HttpConnectionStream::get_remote_ip_and_port(std::string& ip, int& port) const {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getpeername(c_.fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    AddressOf(addr, ip, port);
  }
}

void HttpConnectionStream::get_local_ip_and_port(std::string& ip, int& port) const {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(c_.fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    AddressOf(addr, ip, port);
  }
}

// httplib 0.11 answers 500 to any descriptor at or above FD_SETSIZE because its own select()
// calls could not take it. This stream never selects (it polls), so it reports a small one.
socket_t HttpConnectionStream::socket() const {
  return c_.fd < FD_SETSIZE ? c_.fd : 0;
}

}  // namespace grace
