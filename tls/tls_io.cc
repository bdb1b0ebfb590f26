// The non-blocking TLS steps: OpenSSL's error codes become TlsIo values and its error queue
// becomes message text here, and nowhere else.
#include "tls/tls_io.h"

#include <openssl/err.h>

#include <sys/socket.h>

#include <cerrno>

namespace grace {
namespace {

// The outcome of SSL_do_handshake/SSL_read/SSL_write that returned `ret`.
TlsIo Outcome(SSL* ssl, int ret, std::string* failure = nullptr) {
  switch (SSL_get_error(ssl, ret)) {
    case SSL_ERROR_WANT_READ: return TlsIo::kWantRead;
    case SSL_ERROR_WANT_WRITE: return TlsIo::kWantWrite;
    case SSL_ERROR_ZERO_RETURN: return TlsIo::kClosed;
    case SSL_ERROR_SYSCALL:
      // End of stream without close_notify, a reset or a broken pipe: the connection is gone,
      // which is not a protocol error (a peer that exits with bytes unread resets it; calling
      // that an altered record would send an operator looking for an attacker).
      ERR_clear_error();
      return TlsIo::kClosed;
    case SSL_ERROR_SSL:
      // OpenSSL 3 reports an end of stream without close_notify (a peer that exited) as an
      // error unless SSL_OP_IGNORE_UNEXPECTED_EOF is set: it is a close all the same. Framed
      // protocols over the session detect a message cut short themselves.
      if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ERR_clear_error();
        return TlsIo::kClosed;
      }
      [[fallthrough]];
    default:
      if (failure != nullptr) {
        *failure = OpenSslErrorText("TLS protocol error");
      } else {
        ERR_clear_error();
      }
      return TlsIo::kFailed;
  }
}

// OpenSSL's socket BIO but for its write, which is send(2) with MSG_NOSIGNAL.
int SendWithoutSigpipe(BIO* bio, const char* data, size_t size, size_t* written) {
  int fd = -1;
  BIO_get_fd(bio, &fd);
  BIO_clear_retry_flags(bio);
  *written = 0;
  while (true) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n >= 0) {
      *written = static_cast<size_t>(n);
      return 1;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(bio);
    return 0;
  }
}

const BIO_METHOD* SocketWithoutSigpipe() {
  static const BIO_METHOD* method = []() -> const BIO_METHOD* {
    const BIO_METHOD* socket = BIO_s_socket();
    BIO_METHOD* m = BIO_meth_new(BIO_TYPE_SOCKET, "socket, send(MSG_NOSIGNAL)");
    if (m == nullptr) return nullptr;
    BIO_meth_set_write_ex(m, SendWithoutSigpipe);
    BIO_meth_set_read(m, BIO_meth_get_read(socket));
    BIO_meth_set_puts(m, BIO_meth_get_puts(socket));
    BIO_meth_set_ctrl(m, BIO_meth_get_ctrl(socket));
    BIO_meth_set_create(m, BIO_meth_get_create(socket));
    BIO_meth_set_destroy(m, BIO_meth_get_destroy(socket));
    return m;
  }();
  return method;
}

}  // namespace

bool TlsAttachSocket(SSL* ssl, int fd) {
  const BIO_METHOD* method = SocketWithoutSigpipe();
  BIO* bio = method == nullptr ? nullptr : BIO_new(method);
  if (bio == nullptr) return false;
  BIO_set_fd(bio, fd, BIO_NOCLOSE);
  SSL_set_bio(ssl, bio, bio);  // the session owns the BIO from here
  return true;
}

TlsIo TlsHandshake(SSL* ssl, std::string* failure) {
  ERR_clear_error();
  errno = 0;
  const int ret = SSL_do_handshake(ssl);
  return ret == 1 ? TlsIo::kDone : Outcome(ssl, ret, failure);
}

TlsIo TlsRead(SSL* ssl, char* buf, size_t size, size_t* n) {
  ERR_clear_error();
  errno = 0;
  *n = 0;
  const int ret = SSL_read_ex(ssl, buf, size, n);
  return ret == 1 ? TlsIo::kDone : Outcome(ssl, ret);
}

TlsIo TlsWrite(SSL* ssl, const char* buf, size_t size, size_t* n) {
  ERR_clear_error();
  errno = 0;
  *n = 0;
  const int ret = SSL_write_ex(ssl, buf, size, n);
  return ret == 1 ? TlsIo::kDone : Outcome(ssl, ret);
}

bool TlsHasPending(SSL* ssl) {
  return SSL_has_pending(ssl) == 1;
}

void TlsClose(SSL* ssl) {
  if (SSL_is_init_finished(ssl) != 1) return;
  ERR_clear_error();
  (void)SSL_shutdown(ssl);
  ERR_clear_error();
}

std::string OpenSslErrorText(const std::string& fallback) {
  std::string text;
  while (const unsigned long code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    if (!text.empty()) text += "; ";
    text += buf;
  }
  return text.empty() ? fallback : text;
}

}  // namespace grace
