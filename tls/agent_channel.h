// The agent channel's transport security (grace-agent <-> graced, the agent port): TLS 1.3 with
// an external pre-shared key derived from the cluster secret, so that each side proves the
// secret by completing the handshake, and every frame after it is encrypted and authenticated
// (a byte injected or changed on the path fails the record's AEAD tag and closes the
// connection). No certificates: both ends hold the same key.
//
//   key      = HKDF-SHA256(ikm = cluster secret, salt = kAgentChannelKeySalt,
//                          info = kAgentChannelKeyInfo), 32 bytes; the secret itself is never
//              a TLS key, and the versioned label keeps this key apart from any other use of
//              the secret (the meshes' HMAC proofs)
//   identity = kAgentChannelPskIdentity (public; it names the key's version, not the agent)
//   suite    = TLS_AES_128_GCM_SHA256, key exchange psk_dhe_ke (X25519 on top of the PSK:
//              recorded traffic stays secret if the cluster secret leaks later)
//
// On the wire, with tls = "psk", graced first sends the 8 plaintext bytes kAgentTlsBanner, then
// the agent starts the TLS handshake. The banner lets each side name a mismatch instead of
// timing out: an agent with tls = "off" sees the banner rather than a Challenge frame, one with
// "psk" sees a Challenge frame ("GRCW") rather than the banner, and graced sees a plaintext
// frame where it expects a ClientHello. Inside the tunnel the protocol of core/wire_protocol.h
// runs unchanged (Challenge, Hello with its HMAC proof, Welcome with graced's proof).
//
// Thread contract: a context is built once and then only read; any thread may make sessions
// from it. Each session belongs to the thread that owns its connection.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/status.h"
#include "tls/tls_io.h"
#include "tls/tls_setting.h"

namespace grace {

inline constexpr std::string_view kAgentTlsBanner = "GRCTLS/1";
inline constexpr std::string_view kAgentChannelKeySalt = "grace agent channel";
inline constexpr std::string_view kAgentChannelKeyInfo = "grace/agent-channel/tls13-psk/v1";
inline constexpr std::string_view kAgentChannelPskIdentity = "grace-agent-channel-v1";
// The start of every plaintext frame ("GRCW", core/wire_protocol.h's kWireMagic on the wire).
inline constexpr std::string_view kPlaintextFrameStart = "GRCW";

// The 32-byte PSK of `cluster_secret` (see above). Fails for an empty secret.
StatusOr<std::array<uint8_t, 32>> DeriveAgentChannelKey(std::string_view cluster_secret);

// The agent (tls = "psk") checks what graced sent first, `received` so far: true once it is
// the whole banner, false while it is a prefix of it; FailedPrecondition naming `daemon`
// ("host:port") when graced answered plaintext (a Challenge frame) or something else.
StatusOr<bool> CheckTlsBanner(std::string_view received, const std::string& daemon);
// graced (tls = "psk") checks the first byte a connection sent: Ok for a TLS handshake
// record; FailedPrecondition when it is a plaintext frame (an agent with tls = "off") or
// anything else.
Status CheckClientHelloStart(unsigned char first_byte);
// Whether a plaintext peer's first bytes are the TLS side's: the banner (seen by an agent with
// tls = "off") or a TLS handshake record (seen by graced with tls = "off"); and the
// FailedPrecondition each side then reports (`daemon`: "host:port").
bool StartsWithTlsBanner(std::string_view received);
bool StartsWithTlsRecord(std::string_view received);
Status DaemonWantsTls(const std::string& daemon);
Status AgentSpeaksTls();

class AgentChannelTlsContext {
 public:
  enum class Role { kServer, kClient };

  static StatusOr<std::shared_ptr<const AgentChannelTlsContext>> Make(
      Role role, std::string_view cluster_secret);
  ~AgentChannelTlsContext();
  AgentChannelTlsContext(const AgentChannelTlsContext&) = delete;
  AgentChannelTlsContext& operator=(const AgentChannelTlsContext&) = delete;

  // A session on the connected, non-blocking socket `fd` (which stays the caller's to close),
  // in this context's role; null when OpenSSL cannot make one.
  SslSession NewSession(int fd) const;
  Role role() const { return role_; }

 private:
  AgentChannelTlsContext(Role role, SSL_CTX* ctx, SSL_SESSION* psk)
      : role_(role), ctx_(ctx), psk_(psk) {}
  static int FindSession(SSL* ssl, const unsigned char* identity, size_t identity_len,
                         SSL_SESSION** session);
  static int UseSession(SSL* ssl, const EVP_MD* md, const unsigned char** id, size_t* id_len,
                        SSL_SESSION** session);

  Role role_;
  SSL_CTX* ctx_;
  SSL_SESSION* psk_;  // the external PSK as OpenSSL takes it: key, suite, TLS 1.3
};

// A failed handshake as a message a user can act on, from tls/tls_io.h's failure text: the
// peer holds another cluster secret (the PSK binder did not verify, or the peer said so with a
// decrypt_error alert), offered no agent-channel key, or spoke something else.
std::string AgentChannelHandshakeFailure(const std::string& openssl_failure);

}  // namespace grace
