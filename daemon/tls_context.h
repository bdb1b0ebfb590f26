// TLS for graced's REST API with OpenSSL: the server's certificate and key (TlsServerContext)
// and the client side's checks (gracectl's CA file, the text of a failed certificate
// verification). The non-blocking steps of a session are tls/tls_io.h's, shared with the agent
// channel.
//
// Thread contract: a TlsServerContext is built once at start-up and then only read; any thread
// may make sessions from it (OpenSSL's SSL_CTX is safe to share once configured).
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "core/status.h"
#include "tls/tls_io.h"  // SslSession, the TlsIo steps, OpenSslErrorText

namespace grace {

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

// For clients: fails naming `ca_file` unless it is a readable file holding at least one PEM
// certificate.
Status CheckCaFile(const std::string& ca_file);
// Why a server certificate was not accepted, from OpenSSL's verify result (X509_V_*).
std::string CertificateVerifyText(long verify_result);

}  // namespace grace
