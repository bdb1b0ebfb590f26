// AsyncAgentChannel: one agent-channel connection over Boost.Asio, plaintext or TLS-PSK
// (tls/agent_channel.h), with the same asynchronous calls either way. graced's AgentServer
// holds one per agent connection (server role), the simulated agents one each (client role).
//
//   AsyncAgentChannel channel(std::move(socket), tls_context);  // null context: plaintext
//   channel.AsyncStart([](Status s) { ... });  // banner + TLS handshake; plaintext: at once
//   channel.AsyncReadSome(buf, size, [](const Status& s, size_t n) { ... });
//   channel.AsyncWrite(frame, [](const Status& s) { ... });  // frame kept alive by the caller
//
// A failed start says why in words: the peer's tls setting differs (with the config keys to
// change), its cluster secret differs, or it closed. Handlers never run inside the call that
// starts them; each read or write must complete before the next of its kind starts. After
// Close() pending handlers complete with an error.
//
// Thread contract: all calls and handlers on the socket's io_context thread.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/status.h"
#include "tls/agent_channel.h"

namespace grace {

class AsyncAgentChannel {
 public:
  using Tcp = boost::asio::ip::tcp;
  using StartHandler = std::function<void(const Status&)>;
  using ReadHandler = std::function<void(const Status&, size_t)>;
  using WriteHandler = std::function<void(const Status&)>;

  AsyncAgentChannel(Tcp::socket socket, std::shared_ptr<const AgentChannelTlsContext> tls);
  ~AsyncAgentChannel();

  // Call once the socket is connected. Server: sends the banner and completes the handshake of the
  // peer's ClientHello. Client: reads graced's banner, then runs the handshake. Plaintext:
  // completes at once.
  void AsyncStart(StartHandler done);
  // At most `size` bytes; an end of stream is an Unavailable "connection closed".
  void AsyncReadSome(char* buf, size_t size, ReadHandler done);
  void AsyncWrite(std::string_view data, WriteHandler done);
  // One non-blocking attempt to send `data` (a Refused before closing); never waits.
  void WriteBestEffort(std::string_view data);
  // close_notify when the session is up, then the socket closed.
  void Close();

  Tcp::socket& socket() { return socket_; }
  bool tls() const { return tls_ != nullptr; }

 private:
  void ServerAwaitClientHello(StartHandler done);
  void ClientReadBanner(StartHandler done);
  void Handshake(StartHandler done);
  void TlsReadSome(char* buf, size_t size, ReadHandler done);
  void TlsWriteFrom(std::string_view data, WriteHandler done);
  // Waits for the socket to be readable (want_read) or writable, then runs `then`; an error
  // (closed socket) goes to `failed`.
  void Await(bool want_read, std::function<void()> then, std::function<void(Status)> failed);
  std::string Peer() const;

  Tcp::socket socket_;
  std::shared_ptr<const AgentChannelTlsContext> tls_;
  SslSession ssl_;
  size_t banner_read_ = 0;
  char banner_[8] = {};
  bool established_ = false;
};

}  // namespace grace
