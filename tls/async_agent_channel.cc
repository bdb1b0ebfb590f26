// AsyncAgentChannel: Asio readiness waits around the non-blocking TLS steps of tls/tls_io.h.
// Plaintext connections use Asio's own reads and writes.
#include "tls/async_agent_channel.h"

#include <sys/socket.h>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>

namespace grace {

namespace asio = boost::asio;

namespace {

Status Closed() {
  return Unavailable("connection closed");
}

Status FromAsio(const boost::system::error_code& ec) {
  return ec == asio::error::eof ? Closed() : Unavailable(ec.message());
}

}  // namespace

AsyncAgentChannel::AsyncAgentChannel(Tcp::socket socket,
                                     std::shared_ptr<const AgentChannelTlsContext> tls)
    : socket_(std::move(socket)), tls_(std::move(tls)) {}

AsyncAgentChannel::~AsyncAgentChannel() = default;

std::string AsyncAgentChannel::Peer() const {
  boost::system::error_code ec;
  const auto remote = socket_.remote_endpoint(ec);
  return ec ? "the peer" : remote.address().to_string() + ":" + std::to_string(remote.port());
}

void AsyncAgentChannel::Await(bool want_read, std::function<void()> then,
                              std::function<void(Status)> failed) {
  socket_.async_wait(
      want_read ? Tcp::socket::wait_read : Tcp::socket::wait_write,
      [then = std::move(then), failed = std::move(failed)](const boost::system::error_code& ec) {
        if (ec) return failed(FromAsio(ec));
        then();
      });
}

void AsyncAgentChannel::AsyncStart(StartHandler done) {
  boost::system::error_code ignored;
  // Each frame goes out as soon as it is written (a report, then a heartbeat right behind it),
  // not after the peer's delayed ACK.
  socket_.set_option(Tcp::no_delay(true), ignored);
  if (tls_) socket_.non_blocking(true, ignored);
  if (!tls_) {
    asio::post(socket_.get_executor(), [done = std::move(done)] { done(Status::Ok()); });
    return;
  }
  if (tls_->role() == AgentChannelTlsContext::Role::kClient)
    return ClientReadBanner(std::move(done));
  // The banner fits any empty send buffer; then the peer's first byte says what it speaks.
  asio::async_write(
      socket_, asio::buffer(kAgentTlsBanner.data(), kAgentTlsBanner.size()),
      [this, done = std::move(done)](const boost::system::error_code& ec, size_t) mutable {
        if (ec) return done(FromAsio(ec));
        ServerAwaitClientHello(std::move(done));
      });
}

void AsyncAgentChannel::ServerAwaitClientHello(StartHandler done) {
  auto failed = [done](Status s) { done(s); };
  Await(
      true,
      [this, done]() mutable {
        unsigned char first = 0;
        const ssize_t n = ::recv(socket_.native_handle(), &first, 1, MSG_PEEK);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
          return ServerAwaitClientHello(std::move(done));
        }
        if (n <= 0) {
          return done(Unavailable("closed the connection before the TLS handshake"));
        }
        if (Status s = CheckClientHelloStart(first); !s.ok()) return done(s);
        // The session is made only now: a stranger that never sends costs no TLS state.
        ssl_ = tls_->NewSession(socket_.native_handle());
        if (!ssl_) return done(Internal(OpenSslErrorText("OpenSSL cannot make a TLS session")));
        Handshake(std::move(done));
      },
      failed);
}

void AsyncAgentChannel::ClientReadBanner(StartHandler done) {
  auto failed = [done](Status s) { done(s); };
  Await(
      true,
      [this, done]() mutable {
        // Exactly the banner's bytes: what follows belongs to TLS.
        const ssize_t n = ::recv(socket_.native_handle(), banner_ + banner_read_,
                                 sizeof banner_ - banner_read_, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
          return ClientReadBanner(std::move(done));
        }
        if (n <= 0) return done(Unavailable("closed the connection before the TLS handshake"));
        banner_read_ += static_cast<size_t>(n);
        StatusOr<bool> whole = CheckTlsBanner(std::string_view(banner_, banner_read_), Peer());
        if (!whole.ok()) return done(whole.status());
        if (!*whole) return ClientReadBanner(std::move(done));
        ssl_ = tls_->NewSession(socket_.native_handle());
        if (!ssl_) return done(Internal(OpenSslErrorText("OpenSSL cannot make a TLS session")));
        Handshake(std::move(done));
      },
      failed);
}

void AsyncAgentChannel::Handshake(StartHandler done) {
  std::string failure;
  const TlsIo io = TlsHandshake(ssl_.get(), &failure);
  switch (io) {
    case TlsIo::kDone: established_ = true; return done(Status::Ok());
    case TlsIo::kWantRead:
    case TlsIo::kWantWrite: {
      const bool want_read = io == TlsIo::kWantRead;
      auto failed = [done](Status s) { done(s); };
      return Await(
          want_read, [this, done]() mutable { Handshake(std::move(done)); }, failed);
    }
    case TlsIo::kClosed: return done(Unavailable("closed the connection in the TLS handshake"));
    case TlsIo::kFailed: return done(FailedPrecondition(AgentChannelHandshakeFailure(failure)));
  }
}

void AsyncAgentChannel::AsyncReadSome(char* buf, size_t size, ReadHandler done) {
  if (!tls_) {
    socket_.async_read_some(
        asio::buffer(buf, size),
        [done = std::move(done)](const boost::system::error_code& ec, size_t n) {
          done(ec ? FromAsio(ec) : Status::Ok(), n);
        });
    return;
  }
  TlsReadSome(buf, size, std::move(done));
}

void AsyncAgentChannel::TlsReadSome(char* buf, size_t size, ReadHandler done) {
  // Whole records until the buffer is full or the socket is drained: a 300 KB report is a
  // few calls, not one per 16 KB record.
  size_t got = 0;
  while (got < size) {
    size_t n = 0;
    const TlsIo io = TlsRead(ssl_.get(), buf + got, size - got, &n);
    if (io == TlsIo::kDone) {
      got += n;
      continue;
    }
    if (got > 0) break;  // what came so far first; the next call meets the same state
    if (io == TlsIo::kWantRead || io == TlsIo::kWantWrite) {
      auto failed = [done](Status s) { done(s, 0); };
      return Await(
          io == TlsIo::kWantRead,
          [this, buf, size, done]() mutable { TlsReadSome(buf, size, std::move(done)); }, failed);
    }
    const Status s = io == TlsIo::kClosed
                         ? Closed()
                         : DataLoss("TLS record failed its integrity check (altered on the path)");
    asio::post(socket_.get_executor(), [done = std::move(done), s] { done(s, 0); });
    return;
  }
  asio::post(socket_.get_executor(), [done = std::move(done), got] { done(Status::Ok(), got); });
}

void AsyncAgentChannel::AsyncWrite(std::string_view data, WriteHandler done) {
  if (!tls_) {
    asio::async_write(socket_, asio::buffer(data.data(), data.size()),
                      [done = std::move(done)](const boost::system::error_code& ec, size_t) {
                        done(ec ? FromAsio(ec) : Status::Ok());
                      });
    return;
  }
  TlsWriteFrom(data, std::move(done));
}

void AsyncAgentChannel::TlsWriteFrom(std::string_view data, WriteHandler done) {
  while (!data.empty()) {
    size_t n = 0;
    const TlsIo io = TlsWrite(ssl_.get(), data.data(), data.size(), &n);
    if (io == TlsIo::kDone) {
      data.remove_prefix(n);
      continue;
    }
    if (io == TlsIo::kWantRead || io == TlsIo::kWantWrite) {
      auto failed = [done](Status s) { done(s); };
      return Await(
          io == TlsIo::kWantRead,
          [this, data, done]() mutable { TlsWriteFrom(data, std::move(done)); }, failed);
    }
    asio::post(socket_.get_executor(),
               [done = std::move(done)] { done(Unavailable("TLS write failed")); });
    return;
  }
  asio::post(socket_.get_executor(), [done = std::move(done)] { done(Status::Ok()); });
}

void AsyncAgentChannel::WriteBestEffort(std::string_view data) {
  if (ssl_ && established_) {
    size_t n = 0;
    (void)TlsWrite(ssl_.get(), data.data(), data.size(), &n);
    return;
  }
  if (tls_) return;  // no session to speak in yet
  (void)::send(socket_.native_handle(), data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

void AsyncAgentChannel::Close() {
  if (ssl_ && established_) TlsClose(ssl_.get());
  boost::system::error_code ignored;
  socket_.shutdown(Tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

}  // namespace grace
