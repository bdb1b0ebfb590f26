// TlsAttachSocket: a TLS session's write to a peer that has gone fails as a value, in a process
// that leaves SIGPIPE at its default action (termination), as a test process, a library user
// or a grace-agent started without systemd does. A peer that exits without close_notify is a
// close (kClosed), not a protocol failure: the agent's log must not call it an altered record.
#include "tls/tls_io.h"

#include <fcntl.h>
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

TEST(TlsIoTest, APeerThatGoesWithoutCloseNotifyHasClosedTheSession) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds), 0);
  auto client = AgentChannelTlsContext::Make(AgentChannelTlsContext::Role::kClient, "secret");
  auto server = AgentChannelTlsContext::Make(AgentChannelTlsContext::Role::kServer, "secret");
  ASSERT_TRUE(client.ok() && server.ok());
  SslSession c = (*client)->NewSession(fds[0]);
  SslSession s = (*server)->NewSession(fds[1]);
  ASSERT_TRUE(c && s);
  bool c_done = false, s_done = false;
  for (int i = 0; i < 1000 && !(c_done && s_done); ++i) {
    if (!c_done) c_done = TlsHandshake(c.get()) == TlsIo::kDone;
    if (!s_done) s_done = TlsHandshake(s.get()) == TlsIo::kDone;
  }
  ASSERT_TRUE(c_done && s_done) << "the handshake did not complete";
  size_t n = 0;
  ASSERT_EQ(TlsWrite(s.get(), "hi", 2, &n), TlsIo::kDone);
  char buf[64];
  TlsIo got = TlsIo::kWantRead;
  for (int i = 0; i < 1000 && got == TlsIo::kWantRead; ++i) got = TlsRead(c.get(), buf, 64, &n);
  ASSERT_EQ(got, TlsIo::kDone);
  EXPECT_EQ(std::string(buf, n), "hi");
  // The server's process "exits": its socket closes with no close_notify sent.
  s.reset();
  ::close(fds[1]);
  got = TlsIo::kWantRead;
  for (int i = 0; i < 1000 && got == TlsIo::kWantRead; ++i) got = TlsRead(c.get(), buf, 64, &n);
  EXPECT_EQ(got, TlsIo::kClosed);
  c.reset();
  ::close(fds[0]);
}

}  // namespace
}  // namespace grace
