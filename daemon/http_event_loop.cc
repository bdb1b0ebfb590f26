// HttpEventLoop: the event thread that completes TLS handshakes and reads request heads, the
// worker pool that runs each request on an HttpConnectionStream, and the lingering close of
// connections answered without their body.
#include "daemon/http_event_loop.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

#include <spdlog/spdlog.h>

namespace grace {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How long and how much a connection answered without its body is read and discarded before it
// is closed, so that the client reads the answer instead of a reset.
constexpr milliseconds kDrainTime{2000};
constexpr size_t kDrainMaxBytes = 1 << 20;

// Best effort, for answers the event thread gives without a worker.
void SendSimple(HttpConnection& c, int status, const char* reason, const std::string& message) {
  const std::string body = "{\"error\":\"" + message + "\"}";
  const std::string text =
      "HTTP/1.1 " + std::to_string(status) + " " + reason +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\nConnection: close\r\n\r\n" + body;
  short wait = 0;
  (void)SendSome(c, text.data(), text.size(), &wait);
}

}  // namespace

HttpEventLoop::HttpEventLoop(const HttpServerLimits& limits, ProcessRequest process)
    : limits_(limits), process_(std::move(process)) {}

HttpEventLoop::~HttpEventLoop() {
  Stop();
}

Status HttpEventLoop::Start() {
  epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_ < 0 || wake_ < 0) return Internal(std::string("epoll: ") + std::strerror(errno));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake_;
  ::epoll_ctl(epoll_, EPOLL_CTL_ADD, wake_, &ev);
  // A TLS session's writes cannot raise SIGPIPE (TlsAttachSocket), nor can plaintext sends.
  events_thread_ = std::thread([this] { EventLoop(); });
  for (int i = 0; i < std::max(1, limits_.workers); ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
  return Status::Ok();
}

// From the accept thread.
void HttpEventLoop::Adopt(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  const int yes = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
  auto c = std::make_unique<HttpConnection>();
  c->fd = fd;
  c->waiting_since = Clock::now();
  if (tls_) {
    c->ssl = tls_->NewSession(fd);
    if (!c->ssl) {
      spdlog::warn("http: OpenSSL cannot make a TLS session; connection closed");
      ::close(fd);
      return;
    }
    c->handshaking = true;
    c->handshake_until = c->waiting_since + milliseconds(limits_.handshake_timeout_ms);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      ::close(fd);
      return;
    }
    open_fds_.insert(fd);
    incoming_.push_back(std::move(c));
  }
  Wake();
}

void HttpEventLoop::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    // Wakes workers blocked on a body or a slow reader.
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  ready_cv_.notify_all();
  Wake();
  if (events_thread_.joinable()) events_thread_.join();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  for (auto& [fd, c] : waiting_) Close(std::move(c));
  waiting_.clear();
  for (auto& c : incoming_) Close(std::move(c));
  incoming_.clear();
  for (auto& c : ready_) Close(std::move(c));
  ready_.clear();
  if (epoll_ >= 0) ::close(epoll_);
  if (wake_ >= 0) ::close(wake_);
  epoll_ = wake_ = -1;
}

void HttpEventLoop::Wake() {
  const uint64_t one = 1;
  if (wake_ >= 0) (void)::write(wake_, &one, sizeof(one));
}

void HttpEventLoop::Close(std::unique_ptr<HttpConnection> c) {
  EndTls(*c);
  std::lock_guard<std::mutex> lock(mu_);
  open_fds_.erase(c->fd);
  ::close(c->fd);
}

// ---- event thread ----

void HttpEventLoop::EventLoop() {
  std::vector<epoll_event> events(128);
  auto last_sweep = Clock::now();
  while (true) {
    const int n = ::epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), 100);
    std::vector<std::unique_ptr<HttpConnection>> incoming;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      incoming.swap(incoming_);
    }
    for (auto& c : incoming) Admit(std::move(c));
    if (!incoming.empty()) Trim();
    for (int i = 0; i < n; ++i) {
      if (events[i].data.fd == wake_) {
        uint64_t count;
        (void)::read(wake_, &count, sizeof(count));
        continue;
      }
      auto it = waiting_.find(events[i].data.fd);
      if (it != waiting_.end()) Receive(it);
    }
    const auto now = Clock::now();
    if (now - last_sweep >= milliseconds(100)) {
      Sweep(now);
      last_sweep = now;
    }
  }
}

void HttpEventLoop::Admit(std::unique_ptr<HttpConnection> c) {
  if (!c->draining && HeadEnd(*c) != std::string::npos) return Dispatch(std::move(c));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = c->fd;
  if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, c->fd, &ev) != 0) return Close(std::move(c));
  c->watching = EPOLLIN;
  const int fd = c->fd;
  const bool buffered = !c->draining && HasBufferedInput(*c);
  auto it = waiting_.emplace(fd, std::move(c)).first;
  // The next request may sit whole in the TLS session's buffer: the socket would not say so.
  if (buffered) Receive(it);
}

// Waits for `events` on `c` from now on.
void HttpEventLoop::Watch(HttpConnection& c, uint32_t events) {
  if (c.watching == events) return;
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = c.fd;
  ::epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &ev);
  c.watching = events;
}

// One step of a TLS handshake; true once it is complete (the connection then waits for its
// first request), false while it waits or after it failed (the connection is then gone).
bool HttpEventLoop::Handshake(Waiting::iterator it) {
  HttpConnection& c = *it->second;
  switch (TlsHandshake(c.ssl.get())) {
    case TlsIo::kDone:
      c.handshaking = false;
      c.waiting_since = Clock::now();
      Watch(c, EPOLLIN);
      return true;
    case TlsIo::kWantRead: Watch(c, EPOLLIN); return false;
    case TlsIo::kWantWrite: Watch(c, EPOLLOUT); return false;
    case TlsIo::kClosed:
    case TlsIo::kFailed: break;
  }
  // Garbage, a plaintext request or a refused protocol version: nothing more to say to it.
  c.tls_over = true;
  Forget(it);
  return false;
}

// Over max_connections, closes the connections that have waited longest without a request
// (idle, or draining), so that a flood of idle clients cannot lock out a new one.
void HttpEventLoop::Trim() {
  size_t open;
  {
    std::lock_guard<std::mutex> lock(mu_);
    open = open_fds_.size();
  }
  const size_t cap = static_cast<size_t>(std::max(1, limits_.max_connections));
  if (open <= cap) return;
  std::vector<std::pair<Clock::time_point, int>> idle;
  // A connection still in its TLS handshake has sent no request: it is idle too.
  for (const auto& [fd, c] : waiting_) {
    if (c->in.size() == c->used || c->draining) idle.emplace_back(c->waiting_since, fd);
  }
  const size_t drop = std::min(open - cap, idle.size());
  std::partial_sort(idle.begin(), idle.begin() + static_cast<long>(drop), idle.end());
  for (size_t i = 0; i < drop; ++i) Forget(waiting_.find(idle[i].second));
}

void HttpEventLoop::Forget(Waiting::iterator it) {
  std::unique_ptr<HttpConnection> c = std::move(it->second);
  waiting_.erase(it);
  ::epoll_ctl(epoll_, EPOLL_CTL_DEL, c->fd, nullptr);
  Close(std::move(c));
}

void HttpEventLoop::Receive(Waiting::iterator it) {
  HttpConnection& c = *it->second;
  if (c.draining) return Drain(it);
  if (c.handshaking && !Handshake(it)) return;
  char buf[16 * 1024];
  while (true) {
    short wait = 0;
    const ssize_t n = ReceiveSome(c, buf, sizeof(buf), &wait);
    if (n == 0) return Forget(it);
    if (n < 0) {
      if (wait == 0) return Forget(it);
      return Watch(c, wait == POLLOUT ? EPOLLOUT : EPOLLIN);
    }
    if (c.in.size() == c.used) c.head_started = Clock::now();
    c.in.append(buf, static_cast<size_t>(n));
    const size_t end = HeadEnd(c);
    if (end != std::string::npos) {
      if (static_cast<int>(std::count(c.in.begin() + static_cast<long>(c.used),
                                      c.in.begin() + static_cast<long>(end), '\n')) -
              2 >
          limits_.max_header_count) {
        SendSimple(c, 431, "Request Header Fields Too Large",
                   "more than " + std::to_string(limits_.max_header_count) + " headers");
        return Forget(it);
      }
      if (end - c.used > limits_.max_head_bytes) break;
      std::unique_ptr<HttpConnection> ready = std::move(it->second);
      waiting_.erase(it);
      ::epoll_ctl(epoll_, EPOLL_CTL_DEL, ready->fd, nullptr);
      return Dispatch(std::move(ready));
    }
    if (c.in.size() - c.used > limits_.max_head_bytes) break;
  }
  SendSimple(c, 431, "Request Header Fields Too Large",
             "request head over " + std::to_string(limits_.max_head_bytes) + " bytes");
  Forget(it);
}

// Reads and discards what a connection answered without its body still sends (the raw bytes:
// a TLS session has already said close_notify), up to kDrainMaxBytes.
void HttpEventLoop::Drain(Waiting::iterator it) {
  HttpConnection& c = *it->second;
  char buf[16 * 1024];
  while (true) {
    const ssize_t n = ::recv(c.fd, buf, sizeof(buf), 0);
    if (n == 0) return Forget(it);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      return Forget(it);
    }
    c.drained += static_cast<size_t>(n);
    if (c.drained > kDrainMaxBytes) return Forget(it);
  }
}

void HttpEventLoop::Sweep(Clock::time_point now) {
  std::vector<int> expired;
  for (auto& [fd, c] : waiting_) {
    if (c->handshaking) {
      if (now >= c->handshake_until) expired.push_back(fd);
    } else if (c->draining) {
      if (now >= c->drain_until) expired.push_back(fd);
    } else if (c->in.size() > c->used) {
      if (now - c->head_started > milliseconds(limits_.head_timeout_ms)) {
        SendSimple(
            *c, 408, "Request Timeout",
            "request head not complete within " + std::to_string(limits_.head_timeout_ms) + " ms");
        expired.push_back(fd);
      }
    } else if (now - c->waiting_since > milliseconds(limits_.idle_timeout_ms)) {
      expired.push_back(fd);
    }
  }
  for (int fd : expired) Forget(waiting_.find(fd));
}

void HttpEventLoop::Dispatch(std::unique_ptr<HttpConnection> c) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ready_.push_back(std::move(c));
  }
  ready_cv_.notify_one();
}

// ---- workers ----

void HttpEventLoop::WorkerLoop() {
  while (true) {
    std::unique_ptr<HttpConnection> c;
    {
      std::unique_lock<std::mutex> lock(mu_);
      ready_cv_.wait(lock, [this] { return stopping_ || !ready_.empty(); });
      if (stopping_) return;
      c = std::move(ready_.front());
      ready_.pop_front();
    }
    Serve(std::move(c));
  }
}

// Runs the requests whose heads are buffered, then hands the connection back to the event
// thread, or closes it.
void HttpEventLoop::Serve(std::unique_ptr<HttpConnection> c) {
  while (true) {
    HttpRequestState state;
    bool connection_closed = false;
    const bool last = ++c->served >= limits_.max_requests_per_connection;
    bool ok;
    {
      HttpConnectionStream stream(*c, limits_.body_timeout_ms, limits_.write_timeout_ms, state);
      ok = process_(stream, last, connection_closed, state);
      ok = stream.Flush() && ok;
    }
    if (!ok || state.failed || connection_closed || last) return Close(std::move(c));
    c->in.erase(0, c->used);
    c->used = 0;
    c->waiting_since = Clock::now();
    if (state.skip_body) {
      EndTls(*c);
      ::shutdown(c->fd, SHUT_WR);
      c->draining = true;
      c->drain_until = c->waiting_since + kDrainTime;
      c->in.clear();
      return Return(std::move(c));
    }
    if (HeadEnd(*c) == std::string::npos) {
      c->head_started = c->waiting_since;
      return Return(std::move(c));
    }
  }
}

void HttpEventLoop::Return(std::unique_ptr<HttpConnection> c) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      open_fds_.erase(c->fd);
      ::close(c->fd);
      return;
    }
    incoming_.push_back(std::move(c));
  }
  Wake();
}

}  // namespace grace
