// HttpConnection and HttpConnectionStream: one client connection of BoundedHttpServer
// (daemon/http_server.h), plain or TLS, and the httplib::Stream through which httplib parses one
// request on it. A connection belongs to one thread at a time (the event thread while it
// completes its TLS handshake or waits for a head, then one worker); its stream lives for one
// request on that worker.
#pragma once

#include <httplib.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "daemon/tls_context.h"

namespace grace {

// One client connection: owned by the event thread while it waits for a request head, by one
// worker while a request runs.
struct HttpConnection {
  int fd = -1;
  SslSession ssl;            // null: plaintext
  bool handshaking = false;  // TLS: the handshake is not complete
  bool tls_over = false;     // TLS: failed or closed: nothing more goes through `ssl`
  uint32_t watching = 0;     // the epoll events the event thread waits for
  std::chrono::steady_clock::time_point handshake_until;  // TLS: the handshake's deadline
  std::string in;                                         // received and not yet consumed
  size_t used = 0;
  std::chrono::steady_clock::time_point waiting_since;  // when it last began to wait for a request
  std::chrono::steady_clock::time_point
      head_started;       // when the first byte of the pending head arrived
  bool draining = false;  // answered without reading the body
  std::chrono::steady_clock::time_point drain_until;
  size_t drained = 0;
  int served = 0;
};

// One non-blocking read or write, through the TLS session when the connection has one. Returns
// the bytes moved (> 0), 0 when the peer closed (reads only), or -1 when nothing can move now:
// `*wait` is then POLLIN or POLLOUT to wait for, or 0 when the connection failed.
ssize_t ReceiveSome(HttpConnection& c, char* buf, size_t size, short* wait);
ssize_t SendSome(HttpConnection& c, const char* buf, size_t size, short* wait);
// Whether a read would return bytes the socket itself no longer signals (TLS buffers them).
bool HasBufferedInput(const HttpConnection& c);
// Ends the TLS session with close_notify, best effort (nothing for plaintext, or a session that
// failed or never finished its handshake); the socket stays open.
void EndTls(HttpConnection& c);

// Index just past the head's blank line, or npos while the head is incomplete.
inline size_t HeadEnd(const HttpConnection& c) {
  const size_t at = c.in.find("\r\n\r\n", c.used);
  return at == std::string::npos ? at : at + 4;
}

// What the pre-routing handler tells the worker about the request it runs.
struct HttpRequestState {
  bool skip_body = false;  // answered from the head: the body was not read
  bool failed = false;     // a read or write failed or ran out of time
};
// httplib's view of one request on an HttpConnection: the head comes from what the event thread
// buffered, the body straight from the socket by the request's deadline (body_timeout_ms from
// construction); the response is gathered and sent in large writes (Flush()).
class HttpConnectionStream : public httplib::Stream {
 public:
  HttpConnectionStream(HttpConnection& c, int body_timeout_ms, int write_timeout_ms,
                       HttpRequestState& state);
  ~HttpConnectionStream() override;

  bool is_readable() const override;
  bool is_writable() const override;
  ssize_t read(char* ptr, size_t size) override;
  ssize_t write(const char* ptr, size_t size) override;
  // Sends what write() gathered; false (and the request failed) when the peer does not take it
  // within write_timeout_ms.
  bool Flush();
  void get_remote_ip_and_port(std::string& ip, int& port) const override;
  void get_local_ip_and_port(std::string& ip, int& port) const override;
  socket_t socket() const override;

 private:
  HttpConnection& c_;
  std::chrono::milliseconds write_timeout_;
  HttpRequestState& state_;
  std::chrono::steady_clock::time_point body_deadline_;
  std::string out_;
};

// Waits until `fd` has `events` (poll(2): any descriptor number) or `deadline` passes.
bool WaitFor(int fd, short events, std::chrono::steady_clock::time_point deadline);

}  // namespace grace
