// Non-blocking TLS steps over OpenSSL, shared by graced's REST server (daemon/tls_context.h)
// and the agent channel (tls/agent_channel.h): one step of a session (handshake, read, write,
// close) as a TlsIo value, and OpenSSL's error queue as message text. This is the one place
// where OpenSSL's error codes become values and messages.
//
// Thread contract: a session (SSL) belongs to the thread that owns its connection at the time.
// The Tls* steps clear the calling thread's OpenSSL error queue first, so a failure on one
// session never shows up as another's.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <memory>
#include <string>

namespace grace {

struct SslFree {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
using SslSession = std::unique_ptr<SSL, SslFree>;

// Attaches socket `fd` to `ssl` (instead of SSL_set_fd): its writes use send(2) with
// MSG_NOSIGNAL, so that writing to a peer that has gone fails with EPIPE instead of raising
// SIGPIPE, which would end a process that does not ignore it (OpenSSL's own socket BIO uses
// write(2)). The socket stays the caller's to close. False when OpenSSL cannot make the BIO.
bool TlsAttachSocket(SSL* ssl, int fd);

// How one non-blocking step ended.
enum class TlsIo {
  kDone,       // handshake complete, or `*n` bytes moved
  kWantRead,   // call again once the socket is readable
  kWantWrite,  // call again once the socket is writable
  kClosed,     // the peer closed the session (close_notify, end of stream, a reset, EPIPE)
  kFailed,     // protocol error (a garbage or refused handshake), reset: drop the connection
};

// `failure`, when given, receives OpenSSL's reason for a kFailed outcome (its error queue as
// text), for a caller that turns it into a message (tls/agent_channel.h).
TlsIo TlsHandshake(SSL* ssl, std::string* failure = nullptr);
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

}  // namespace grace
