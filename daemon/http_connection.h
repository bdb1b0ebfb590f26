// HttpConnection and HttpConnectionStream: one client connection of BoundedHttpServer
// (daemon/http_server.h), and the httplib::Stream through which httplib parses one request on
// it. A connection belongs to one thread at a time (the event thread while it waits for a
// head, then one worker); its stream lives for one request on that worker.
#pragma once

#include <httplib.h>

#include <chrono>
#include <cstddef>
#include <string>

namespace grace {

// One client connection: owned by the event thread while it waits for a request head, by one
// worker while a request runs.
struct HttpConnection {
  int fd = -1;
  std::string in;  // received and not yet consumed
  size_t used = 0;
  std::chrono::steady_clock::time_point waiting_since;  // when it last began to wait for a request
  std::chrono::steady_clock::time_point
      head_started;       // when the first byte of the pending head arrived
  bool draining = false;  // answered without reading the body
  std::chrono::steady_clock::time_point drain_until;
  size_t drained = 0;
  int served = 0;
};

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
