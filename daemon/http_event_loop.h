// HttpEventLoop: the connection handling of BoundedHttpServer (daemon/http_server.h), in place of
// cpp-httplib's thread-per-connection loop. One event thread (epoll) owns every connection
// between requests: it completes TLS handshakes and reads request heads without blocking, bounded
// in bytes, header count and time; a complete head goes to one of a fixed pool of workers, which
// runs the request (ProcessRequest) on an HttpConnectionStream (daemon/http_connection.h) and
// hands the connection back. Over max_connections the connections idle longest are closed.
//
// Thread contract: set_tls() and Start() once, before any Adopt(); Adopt() from the accept
// thread; Stop() from any thread (it joins the event thread and the workers; safe to call twice).
// ProcessRequest runs on the workers, one request per worker at a time.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/status.h"
#include "daemon/http_connection.h"
#include "daemon/http_server.h"
#include "daemon/tls_context.h"

namespace grace {

class HttpEventLoop {
 public:
  // Parses and answers one request from `stream` (httplib's processing); `last`: the connection
  // closes after it; sets `closed` when the request asked to close. False: the connection failed.
  using ProcessRequest = std::function<bool(HttpConnectionStream& stream, bool last, bool& closed,
                                            HttpRequestState& state)>;

  HttpEventLoop(const HttpServerLimits& limits, ProcessRequest process);
  ~HttpEventLoop();
  HttpEventLoop(const HttpEventLoop&) = delete;
  HttpEventLoop& operator=(const HttpEventLoop&) = delete;

  // Before Start(): every connection is TLS with `tls`; null (the default) serves plaintext.
  void set_tls(std::shared_ptr<const TlsServerContext> tls) { tls_ = std::move(tls); }
  Status Start();
  // Takes an accepted connection (the loop closes it).
  void Adopt(int fd);
  void Stop();

 private:
  using Waiting = std::unordered_map<int, std::unique_ptr<HttpConnection>>;

  void Wake();
  void Close(std::unique_ptr<HttpConnection> c);
  // Event thread.
  void EventLoop();
  void Admit(std::unique_ptr<HttpConnection> c);
  void Watch(HttpConnection& c, uint32_t events);
  bool Handshake(Waiting::iterator it);
  void Trim();
  void Forget(Waiting::iterator it);
  void Receive(Waiting::iterator it);
  void Drain(Waiting::iterator it);
  void Sweep(std::chrono::steady_clock::time_point now);
  void Dispatch(std::unique_ptr<HttpConnection> c);
  // Workers.
  void WorkerLoop();
  void Serve(std::unique_ptr<HttpConnection> c);
  void Return(std::unique_ptr<HttpConnection> c);

  const HttpServerLimits& limits_;
  const ProcessRequest process_;
  std::shared_ptr<const TlsServerContext> tls_;  // set before Start(), then only read
  int epoll_ = -1;
  int wake_ = -1;
  std::thread events_thread_;
  std::vector<std::thread> workers_;

  std::mutex mu_;
  bool stopping_ = false;                                  // guarded by mu_
  std::unordered_set<int> open_fds_;                       // guarded by mu_
  std::vector<std::unique_ptr<HttpConnection>> incoming_;  // guarded by mu_: to the event thread
  std::deque<std::unique_ptr<HttpConnection>> ready_;      // guarded by mu_: to the workers
  std::condition_variable ready_cv_;
  Waiting waiting_;  // event thread only
};

}  // namespace grace
