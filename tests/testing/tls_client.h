// TlsRawClient: RawClient (tests/testing/raw_client.h) over TLS: a loopback connection whose
// handshake verifies the server against a CA file, then sends what a well-behaved client
// library would not (a partial head, a lying Content-Length, a connection left idle). Reads are
// bounded by a 20 s receive timeout so that a broken server fails a test instead of hanging it;
// no test asserts that time. Header-only; link OpenSSL::SSL (or grace_daemon).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace grace::testing {

class TlsRawClient {
 public:
  TlsRawClient(int port, const std::string& ca_file) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{20, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return;
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    if (SSL_CTX_load_verify_locations(ctx_, ca_file.c_str(), nullptr) != 1) return;
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    SSL_set1_host(ssl_, "127.0.0.1");
    connected_ = SSL_connect(ssl_) == 1;
  }
  ~TlsRawClient() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
    ::close(fd_);
  }
  // Whether the handshake completed and the server's certificate was verified.
  bool connected() const { return connected_; }
  bool Send(const std::string& text) {
    size_t n = 0;
    return connected_ && SSL_write_ex(ssl_, text.data(), text.size(), &n) == 1 && n == text.size();
  }
  // Everything until the server closes (or the 20 s bound).
  std::string ReadAll() {
    std::string out;
    char buf[4096];
    size_t n = 0;
    while (connected_ && SSL_read_ex(ssl_, buf, sizeof(buf), &n) == 1) out.append(buf, n);
    return out;
  }
  // Reads and drops what comes until the server ends the session or closes: true then, false
  // when the 20 s bound passed first (the server kept the connection).
  bool WaitClosed() {
    char buf[4096];
    size_t n = 0;
    int ret = 0;
    while (connected_ && (ret = SSL_read_ex(ssl_, buf, sizeof(buf), &n)) == 1) {
    }
    if (!connected_) return false;
    // The receive timeout reads as "want read"; anything else is the end of the connection.
    const int error = SSL_get_error(ssl_, ret);
    return error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE;
  }
  // The status of the first response ("HTTP/1.1 200 OK" -> 200), or 0.
  int ReadStatus() {
    std::string head;
    char c;
    size_t n = 0;
    while (connected_ && head.find("\r\n") == std::string::npos &&
           SSL_read_ex(ssl_, &c, 1, &n) == 1) {
      head += c;
    }
    return head.size() > 12 ? std::stoi(head.substr(9, 3)) : 0;
  }

 private:
  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  bool connected_ = false;
};

}  // namespace grace::testing
