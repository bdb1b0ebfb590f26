// DaemonConnection over POSIX sockets and poll(2); every wait is bounded. The TLS steps are
// tls/tls_io.h's, the banner and mismatch messages tls/agent_channel.h's.
#include "tls/daemon_connection.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "core/wire_protocol.h"
#include "tls/agent_channel.h"

namespace grace {

namespace {

int MsUntil(DaemonConnection::Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - DaemonConnection::Clock::now());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 1 << 30));
}

// Ok once `fd` is ready for `events`; DeadlineExceeded when `ms` pass first.
Status PollFor(int fd, short events, int ms, const std::string& what) {
  pollfd p{fd, events, 0};
  int r;
  do {
    r = ::poll(&p, 1, ms);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return Unavailable(what + ": poll: " + std::strerror(errno));
  if (r == 0) return DeadlineExceeded(what + ": timed out");
  return Status::Ok();
}

}  // namespace

class DaemonConnection::Tls {
 public:
  std::shared_ptr<const AgentChannelTlsContext> context;
  SslSession ssl;
};

DaemonConnection::DaemonConnection(std::string address, AgentChannelTls tls,
                                   std::string cluster_secret)
    : address_(std::move(address)), setting_(tls), cluster_secret_(std::move(cluster_secret)) {}

DaemonConnection::~DaemonConnection() {
  Close();
}

bool DaemonConnection::is_open() const {
  return fd_ >= 0;
}

void DaemonConnection::Close() {
  if (tls_ && tls_->ssl) {
    TlsClose(tls_->ssl.get());
    tls_->ssl.reset();
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Status DaemonConnection::Connect(Clock::time_point deadline) {
  const size_t colon = address_.rfind(':');
  if (colon == std::string::npos) return InvalidArgument("daemon address '" + address_ + "'");
  const std::string host = address_.substr(0, colon), port = address_.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int e = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); e != 0) {
    return Unavailable("daemon " + address_ + ": " + ::gai_strerror(e));
  }
  std::string last = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last = std::strerror(errno);
      continue;
    }
    int err = 0;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        if (Status s = PollFor(fd, POLLOUT, MsUntil(deadline), "connect"); !s.ok()) {
          err = ETIMEDOUT;
        } else {
          socklen_t len = sizeof err;
          ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        }
      }
    }
    if (err != 0) {
      last = std::strerror(err);
      ::close(fd);
      continue;
    }
    // Each frame leaves at once, not after graced's delayed ACK of the previous one.
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fd_ = fd;
    break;
  }
  ::freeaddrinfo(found);
  if (fd_ < 0) return Unavailable("daemon " + address_ + ": " + last);
  return Status::Ok();
}

Status DaemonConnection::Open(Clock::time_point deadline) {
  Close();
  received_any_ = false;
  ended_ = Status::Ok();
  GRACE_RETURN_IF_ERROR(Connect(deadline));
  if (setting_ == AgentChannelTls::kOff) return Status::Ok();
  if (!tls_) {
    auto context =
        AgentChannelTlsContext::Make(AgentChannelTlsContext::Role::kClient, cluster_secret_);
    if (!context.ok()) {
      Close();
      return FailedPrecondition(context.status().message());
    }
    tls_ = std::make_unique<Tls>();
    tls_->context = std::move(context).value();
  }
  // The banner, exactly: what follows it is graced's TLS.
  char banner[kAgentTlsBanner.size()];
  size_t got = 0;
  while (true) {
    if (Status s = PollFor(fd_, POLLIN, MsUntil(deadline), "daemon " + address_ + ": TLS banner");
        !s.ok()) {
      Close();
      return s;
    }
    const ssize_t n = ::recv(fd_, banner + got, sizeof banner - got, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) {
      Close();
      return Unavailable("daemon " + address_ + " closed the connection before the TLS handshake");
    }
    got += static_cast<size_t>(n);
    StatusOr<bool> whole = CheckTlsBanner(std::string_view(banner, got), address_);
    if (!whole.ok()) {
      Close();
      return whole.status();
    }
    if (*whole) break;
  }
  tls_->ssl = tls_->context->NewSession(fd_);
  if (!tls_->ssl) {
    Close();
    return Internal("daemon " + address_ + ": " + OpenSslErrorText("no TLS session"));
  }
  while (true) {
    std::string failure;
    const TlsIo io = TlsHandshake(tls_->ssl.get(), &failure);
    if (io == TlsIo::kDone) return Status::Ok();
    if (io == TlsIo::kWantRead || io == TlsIo::kWantWrite) {
      if (Status s = PollFor(fd_, io == TlsIo::kWantRead ? POLLIN : POLLOUT, MsUntil(deadline),
                             "graced at " + address_ + ": TLS handshake");
          !s.ok()) {
        Close();
        return s;
      }
      continue;
    }
    Close();
    if (io == TlsIo::kClosed) {
      return Unavailable("graced at " + address_ + " closed the connection in the TLS handshake");
    }
    return FailedPrecondition("graced at " + address_ + ": " +
                              AgentChannelHandshakeFailure(failure));
  }
}

Status DaemonConnection::CheckFirstPlaintext(std::string_view first) {
  if (!StartsWithTlsBanner(first)) return Status::Ok();
  // Say so in a plaintext frame: graced then names the mismatch too, not just a closed
  // connection.
  const std::string frame = EncodeFrame(Refused{"agent has [daemon] tls = \"off\""});
  (void)::send(fd_, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  Close();
  return DaemonWantsTls(address_);
}

Status DaemonConnection::Ended(Status why, bool delivered) {
  if (!delivered) return why;
  // The bytes that came before the end first (a Refused, then graced's close): the end is
  // the next call's answer.
  ended_ = std::move(why);
  return Status::Ok();
}

Status DaemonConnection::Receive(std::chrono::milliseconds wait, std::string* in) {
  if (!ended_.ok()) return std::exchange(ended_, Unavailable("connection closed"));
  if (fd_ < 0) return Unavailable("daemon " + address_ + ": not connected");
  SSL* ssl = tls_ && tls_->ssl ? tls_->ssl.get() : nullptr;
  if (ssl == nullptr || !TlsHasPending(ssl)) {
    Status ready = PollFor(fd_, POLLIN, static_cast<int>(wait.count()), "receive");
    if (ready.code() == StatusCode::kDeadlineExceeded) return Status::Ok();  // nothing came
    if (!ready.ok()) return ready;
  }
  char buf[64 << 10];
  const size_t before = in->size();
  while (true) {
    if (ssl == nullptr) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        in->append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      const std::string why = n == 0 ? "connection closed" : std::strerror(errno);
      Close();
      return Ended(Unavailable(why), in->size() > before);
    }
    size_t n = 0;
    const TlsIo io = TlsRead(ssl, buf, sizeof buf, &n);
    if (io == TlsIo::kDone) {
      in->append(buf, n);
      continue;
    }
    if (io == TlsIo::kWantRead) break;
    if (io == TlsIo::kWantWrite) {
      // A TLS 1.3 key update to answer: once the socket takes it, the next call reads on.
      (void)PollFor(fd_, POLLOUT, static_cast<int>(wait.count()), "receive");
      break;
    }
    Close();
    return Ended(Unavailable(io == TlsIo::kClosed
                                 ? "connection closed"
                                 : "a TLS record failed its integrity check (altered on the path)"),
                 in->size() > before);
  }
  if (!received_any_ && in->size() > before) {
    received_any_ = true;
    if (ssl == nullptr) return CheckFirstPlaintext(std::string_view(*in).substr(before));
  }
  return Status::Ok();
}

Status DaemonConnection::Send(std::string_view bytes, Clock::time_point deadline) {
  if (fd_ < 0) return Unavailable("daemon " + address_ + ": not connected");
  SSL* ssl = tls_ && tls_->ssl ? tls_->ssl.get() : nullptr;
  while (!bytes.empty()) {
    short wait = POLLOUT;
    if (ssl == nullptr) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        bytes.remove_prefix(static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        const std::string why = std::strerror(errno);
        Close();
        return Unavailable("send: " + why);
      }
    } else {
      size_t n = 0;
      const TlsIo io = TlsWrite(ssl, bytes.data(), bytes.size(), &n);
      if (io == TlsIo::kDone) {
        bytes.remove_prefix(n);
        continue;
      }
      if (io != TlsIo::kWantRead && io != TlsIo::kWantWrite) {
        Close();
        return Unavailable("send: TLS session failed");
      }
      if (io == TlsIo::kWantRead) wait = POLLIN;
    }
    if (Status s = PollFor(fd_, wait, MsUntil(deadline), "send"); !s.ok()) {
      Close();
      return s;
    }
  }
  return Status::Ok();
}

}  // namespace grace
