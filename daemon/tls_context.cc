// TlsServerContext and the CA-file checks; OpenSSL's error text comes from tls/tls_io.h.
#include "daemon/tls_context.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace grace {
namespace {

// A file OpenSSL is about to read: missing, unreadable or not a regular file (a FIFO would
// block the start-up) is named here, with the system's reason, before OpenSSL's vaguer one.
Status CheckReadableFile(const std::string& what, const std::string& path) {
  if (path.empty()) return InvalidArgument(what + ": no file named");
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return NotFound(what + " " + path + ": no such file");
  }
  if (!std::filesystem::is_regular_file(path, ec)) {
    return InvalidArgument(what + " " + path + ": not a regular file");
  }
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return InvalidArgument(what + " " + path + ": cannot read: " + std::strerror(errno));
  }
  std::fclose(f);
  return Status::Ok();
}

// An encrypted key would make OpenSSL prompt on the terminal for its pass phrase; graced runs
// unattended, so there is none and the key is refused with a message.
int NoPassphrase(char*, int, int, void*) {
  return 0;
}

}  // namespace

StatusOr<std::shared_ptr<const TlsServerContext>> TlsServerContext::Load(
    const std::string& cert_file, const std::string& key_file) {
  GRACE_RETURN_IF_ERROR(CheckReadableFile("TLS certificate file", cert_file));
  GRACE_RETURN_IF_ERROR(CheckReadableFile("TLS key file", key_file));
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return Internal(OpenSslErrorText("OpenSSL cannot make a TLS context"));
  std::shared_ptr<const TlsServerContext> context(new TlsServerContext(ctx));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // Renegotiation is a way to make the server compute for free; a peer's end of stream without
  // close_notify is an ordinary close, not an error (HTTP/1.1 delimits its own messages).
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
  // Idle sessions give their record buffers back, so that connections kept alive cost little
  // memory.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_default_passwd_cb(ctx, NoPassphrase);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    return InvalidArgument("TLS certificate file " + cert_file + ": not a PEM certificate (" +
                           OpenSslErrorText("no certificate found") + ")");
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
      ERR_clear_error();
      return InvalidArgument("TLS key file " + key_file + " does not match the certificate in " +
                             cert_file);
    }
    return InvalidArgument("TLS key file " + key_file + ": not an unencrypted PEM private key (" +
                           OpenSslErrorText("no key found") + ")");
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return InvalidArgument("TLS key file " + key_file + " does not match the certificate in " +
                           cert_file + " (" + OpenSslErrorText("key mismatch") + ")");
  }
  return context;
}

TlsServerContext::~TlsServerContext() {
  SSL_CTX_free(ctx_);
}

SslSession TlsServerContext::NewSession(int fd) const {
  ERR_clear_error();
  SslSession ssl(SSL_new(ctx_));
  if (!ssl || !TlsAttachSocket(ssl.get(), fd)) {
    ERR_clear_error();
    return nullptr;
  }
  SSL_set_accept_state(ssl.get());
  return ssl;
}

Status CheckCaFile(const std::string& ca_file) {
  GRACE_RETURN_IF_ERROR(CheckReadableFile("CA file", ca_file));
  ERR_clear_error();
  BIO* bio = BIO_new_file(ca_file.c_str(), "r");
  if (bio == nullptr) {
    return InvalidArgument("CA file " + ca_file + ": " + OpenSslErrorText("cannot open"));
  }
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) {
    return InvalidArgument("CA file " + ca_file + ": no PEM certificate in it (" +
                           OpenSslErrorText("unreadable") + ")");
  }
  X509_free(cert);
  return Status::Ok();
}

std::string CertificateVerifyText(long verify_result) {
  return X509_verify_cert_error_string(verify_result);
}

}  // namespace grace
