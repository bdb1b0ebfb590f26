// TLS for graced's REST API with OpenSSL: the server's certificate and key (TlsServerContext),
// one non-blocking step of a session (handshake, read, write, close), and the client side's
// checks (gracectl's CA file, the text of a failed certificate verification). This is the one
// place where OpenSSL's errors become Status values and messages.
//
// Thread contract: a TlsServerContext is built once at start-up and then only read; any thread
// may make sessions from it (OpenSSL's SSL_CTX is safe to share once configured). A session
// (SSL) belongs to the thread that owns its connection at the time. The Tls* steps clear the
// calling thread's OpenSSL error queue first, so a failure on one session never shows up as
// another's.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <memory>
#include <string>

#include "core/status.h"

namespace grace {

struct SslFree {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
using SslSession = std::unique_ptr<SSL, SslFree>;

class TlsServerContext {
 public:
  // Reads a PEM certificate chain (the server's certificate first) and its PEM private key.
  // Fails naming the file that is missing, unreadable or not PEM, or the key that does not
  // match the certificate.
  static StatusOr<std::shared_ptr<const TlsServerContext>> Load(const std::string& cert_file,
                                                                const std::string& key_file);
  ~TlsServerContext();
  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;

  // A server session on the connected, non-blocking socket `fd` (which stays the caller's to
  // close), or null when OpenSSL cannot make one.
  SslSession NewSession(int fd) const;

 private:
  explicit TlsServerContext(SSL_CTX* ctx) : ctx_(ctx) {}
  SSL_CTX* ctx_;
};

// How one non-blocking step ended.
enum class TlsIo {
  kDone,       // handshake complete, or `*n` bytes moved
  kWantRead,   // call again once the socket is readable
  kWantWrite,  // call again once the socket is writable
  kClosed,     // the peer closed the session (close_notify or end of stream)
  kFailed,     // protocol error (a garbage or refused handshake), reset: drop the connection
};

TlsIo TlsHandshake(SSL* ssl);
TlsIo TlsRead(SSL* ssl, char* buf, size_t size, size_t* n);
TlsIo TlsWrite(SSL* ssl, const char* buf, size_t size, size_t* n);
// Whether the session holds received bytes not yet returned by TlsRead (the socket may then
// stay silent although a read would return data).
bool TlsHasPending(SSL* ssl);
// Sends close_notify, best effort and without waiting; skip it for a session that failed.
void TlsClose(SSL* ssl);

// OpenSSL's queued errors of this thread as one line (and the queue cleared); `fallback` when
// the queue is empty.
std::string OpenSslErrorText(const std::string& fallback);

// For clients: fails naming `ca_file` unless it is a readable file holding at least one PEM
// certificate.
Status CheckCaFile(const std::string& ca_file);
// Why a server certificate was not accepted, from OpenSSL's verify result (X509_V_*).
std::string CertificateVerifyText(long verify_result);

}  // namespace grace
