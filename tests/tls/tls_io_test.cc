// TlsAttachSocket: a TLS session's write to a peer that has gone fails as a value, in a process
// that leaves SIGPIPE at its default action (termination), as a test process, a library user
// or a grace-agent started without systemd does.
#include "tls/tls_io.h"

#include <sys/socket.h>
#include <unistd.h>

#include <csignal>

#include <gtest/gtest.h>

#include "tls/agent_channel.h"

namespace grace {
namespace {

TEST(TlsIoTest, AWriteToAPeerThatHasGoneFailsWithoutRaisingSigpipe) {
  // OpenSSL's own socket BIO writes with write(2): this process would end here.
  std::signal(SIGPIPE, SIG_DFL);
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  ::close(fds[1]);
  auto client = AgentChannelTlsContext::Make(AgentChannelTlsContext::Role::kClient, "secret");
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  SslSession ssl = (*client)->NewSession(fds[0]);
  ASSERT_TRUE(ssl);
  // The handshake's first step writes the ClientHello to the closed peer.
  const TlsIo io = TlsHandshake(ssl.get());
  EXPECT_TRUE(io == TlsIo::kFailed || io == TlsIo::kClosed) << static_cast<int>(io);
  ssl.reset();
  ::close(fds[0]);
}

TEST(TlsIoTest, TheSessionUsesTheAttachedSocket) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  ASSERT_NE(ctx, nullptr);
  SslSession ssl(SSL_new(ctx));
  ASSERT_TRUE(TlsAttachSocket(ssl.get(), fds[0]));
  EXPECT_EQ(SSL_get_fd(ssl.get()), fds[0]);
  SSL_set_connect_state(ssl.get());
  // Non-blocking in effect: the peer never answers, so the handshake waits to read, having
  // written its ClientHello (a TLS handshake record, type 22) through the attached socket.
  ::shutdown(fds[1], SHUT_WR);
  char first = 0;
  EXPECT_NE(TlsHandshake(ssl.get()), TlsIo::kDone);
  ASSERT_EQ(::recv(fds[1], &first, 1, MSG_DONTWAIT), 1);
  EXPECT_EQ(first, 22);
  ssl.reset();
  SSL_CTX_free(ctx);
  ::close(fds[0]);
  ::close(fds[1]);
}

}  // namespace
}  // namespace grace
