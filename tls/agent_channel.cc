// The agent channel's PSK and TLS 1.3 contexts (OpenSSL 3: the key from core/hkdf.h, the TLS 1.3
// external-PSK session callbacks).
#include "tls/agent_channel.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/kdf.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "core/hkdf.h"

namespace grace {
namespace {

// TLS_AES_128_GCM_SHA256: its hash must be the PSK's (SHA-256).
constexpr unsigned char kSuiteId[2] = {0x13, 0x01};
constexpr const char* kSuiteName = "TLS_AES_128_GCM_SHA256";

bool Contains(const std::string& text, std::string_view what) {
  return text.find(what) != std::string::npos;
}

}  // namespace

StatusOr<AgentChannelTls> ParseAgentChannelTls(std::string_view text) {
  if (text == "psk") return AgentChannelTls::kPsk;
  if (text == "off") return AgentChannelTls::kOff;
  return InvalidArgument("expected \"psk\" or \"off\", got \"" + std::string(text) + "\"");
}

const char* AgentChannelTlsName(AgentChannelTls tls) {
  return tls == AgentChannelTls::kPsk ? "psk" : "off";
}

std::string TlsSettingHint() {
  return "both sides need the same tls setting ([daemon] tls in agent.toml, [agents] tls in "
         "graced.toml)";
}

StatusOr<bool> CheckTlsBanner(std::string_view received, const std::string& daemon) {
  if (received.substr(0, kPlaintextFrameStart.size()) == kPlaintextFrameStart) {
    return FailedPrecondition("graced at " + daemon +
                              " answered plaintext ([agents] tls = \"off\"), this agent has "
                              "[daemon] tls = \"psk\"; " +
                              TlsSettingHint());
  }
  const size_t n = std::min(received.size(), kAgentTlsBanner.size());
  if (received.substr(0, n) != kAgentTlsBanner.substr(0, n)) {
    return FailedPrecondition(daemon + " is not graced's agent port: it sent no grace TLS banner");
  }
  return received.size() >= kAgentTlsBanner.size();
}

Status CheckClientHelloStart(unsigned char first_byte) {
  if (first_byte == 0x16) return Status::Ok();  // TLS record type: handshake
  if (first_byte == static_cast<unsigned char>(kPlaintextFrameStart[0])) {
    return FailedPrecondition(
        "the agent speaks plaintext ([daemon] tls = \"off\"), graced has [agents] tls = "
        "\"psk\"; " +
        TlsSettingHint());
  }
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02x", first_byte);
  return FailedPrecondition(std::string("sent byte ") + hex +
                            " where a TLS ClientHello belongs (not a grace agent)");
}

bool StartsWithTlsBanner(std::string_view received) {
  return received.size() >= 4 && received.substr(0, 4) == kAgentTlsBanner.substr(0, 4);
}

bool StartsWithTlsRecord(std::string_view received) {
  // A handshake record of TLS 1.0-1.3 framing: type 22, version 3.x.
  return received.size() >= 2 && received[0] == 0x16 && received[1] == 0x03;
}

Status DaemonWantsTls(const std::string& daemon) {
  return FailedPrecondition("graced at " + daemon +
                            " wants TLS ([agents] tls = \"psk\"), this agent has [daemon] tls = "
                            "\"off\"; " +
                            TlsSettingHint());
}

Status AgentSpeaksTls() {
  return FailedPrecondition(
      "the agent speaks TLS ([daemon] tls = \"psk\"), graced has [agents] tls = \"off\"; " +
      TlsSettingHint());
}

StatusOr<std::array<uint8_t, 32>> DeriveAgentChannelKey(std::string_view cluster_secret) {
  if (cluster_secret.empty()) {
    return InvalidArgument("agent channel TLS: no cluster secret to derive the key from");
  }
  std::array<uint8_t, 32> key{};
  if (Status st = HkdfSha256(cluster_secret, kAgentChannelKeySalt, kAgentChannelKeyInfo, key);
      !st.ok()) {
    return st.WithContext("agent channel TLS key");
  }
  return key;
}

StatusOr<std::shared_ptr<const AgentChannelTlsContext>> AgentChannelTlsContext::Make(
    Role role, std::string_view cluster_secret) {
  using Key = std::array<uint8_t, 32>;
  GRACE_ASSIGN_OR_RETURN(const Key key, DeriveAgentChannelKey(cluster_secret));
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(role == Role::kServer ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) return Internal(OpenSslErrorText("OpenSSL cannot make a TLS context"));
  SSL_SESSION* psk = SSL_SESSION_new();
  std::shared_ptr<const AgentChannelTlsContext> context(new AgentChannelTlsContext(role, ctx, psk));
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  // No session tickets (every connection proves the key afresh, and the server writes nothing
  // after the handshake that the agent did not ask for); no middlebox-compatibility records.
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_clear_options(ctx, SSL_OP_ENABLE_MIDDLEBOX_COMPAT);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  // Partial writes let a non-blocking writer resume where it stopped; idle sessions (the
  // strangers awaiting the handshake among them) give their record buffers back.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_set_ciphersuites(ctx, kSuiteName) != 1 || psk == nullptr) {
    return Internal(OpenSslErrorText("OpenSSL lacks " + std::string(kSuiteName)));
  }
  SSL_CTX_set_app_data(ctx, const_cast<AgentChannelTlsContext*>(context.get()));
  if (role == Role::kServer) {
    SSL_CTX_set_psk_find_session_callback(ctx, &AgentChannelTlsContext::FindSession);
  } else {
    SSL_CTX_set_psk_use_session_callback(ctx, &AgentChannelTlsContext::UseSession);
  }
  // The PSK as a TLS 1.3 session: OpenSSL finds the suite only through a session object.
  SslSession probe(SSL_new(ctx));
  const SSL_CIPHER* suite = probe ? SSL_CIPHER_find(probe.get(), kSuiteId) : nullptr;
  if (suite == nullptr || SSL_SESSION_set1_master_key(psk, key.data(), key.size()) != 1 ||
      SSL_SESSION_set_cipher(psk, suite) != 1 ||
      SSL_SESSION_set_protocol_version(psk, TLS1_3_VERSION) != 1) {
    return Internal(OpenSslErrorText("OpenSSL cannot hold the agent-channel PSK"));
  }
  return context;
}

AgentChannelTlsContext::~AgentChannelTlsContext() {
  SSL_SESSION_free(psk_);
  SSL_CTX_free(ctx_);
}

int AgentChannelTlsContext::FindSession(SSL* ssl, const unsigned char* identity,
                                        size_t identity_len, SSL_SESSION** session) {
  const auto* self =
      static_cast<const AgentChannelTlsContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  *session = nullptr;
  if (identity_len == kAgentChannelPskIdentity.size() &&
      std::memcmp(identity, kAgentChannelPskIdentity.data(), identity_len) == 0) {
    SSL_SESSION_up_ref(self->psk_);  // OpenSSL takes this reference
    *session = self->psk_;
  }
  // An unknown identity is no PSK, not an error: the handshake then fails for want of one.
  return 1;
}

int AgentChannelTlsContext::UseSession(SSL* ssl, const EVP_MD* md, const unsigned char** id,
                                       size_t* id_len, SSL_SESSION** session) {
  const auto* self =
      static_cast<const AgentChannelTlsContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  // A second call (after a HelloRetryRequest) names the hash; ours is SHA-256 only.
  if (md != nullptr && md != SSL_CIPHER_get_handshake_digest(SSL_SESSION_get0_cipher(self->psk_))) {
    *session = nullptr;
    return 1;
  }
  SSL_SESSION_up_ref(self->psk_);
  *session = self->psk_;
  *id = reinterpret_cast<const unsigned char*>(kAgentChannelPskIdentity.data());
  *id_len = kAgentChannelPskIdentity.size();
  return 1;
}

SslSession AgentChannelTlsContext::NewSession(int fd) const {
  ERR_clear_error();
  SslSession ssl(SSL_new(ctx_));
  if (!ssl || !TlsAttachSocket(ssl.get(), fd)) {
    ERR_clear_error();
    return nullptr;
  }
  if (role_ == Role::kServer) {
    SSL_set_accept_state(ssl.get());
  } else {
    SSL_set_connect_state(ssl.get());
  }
  return ssl;
}

std::string AgentChannelHandshakeFailure(const std::string& openssl_failure) {
  const std::string& f = openssl_failure;
  // graced checks the binder and answers a wrong one with illegal_parameter (OpenSSL 3) or
  // decrypt_error (RFC 8446): the agent sees the alert, graced the failed binder.
  if (Contains(f, "binder does not verify") || Contains(f, "alert illegal parameter") ||
      Contains(f, "decrypt error") || Contains(f, "bad record mac")) {
    return "TLS handshake failed: the cluster secrets differ (the peer derived another "
           "agent-channel key): set the same cluster_secret in graced.toml [daemon] and "
           "agent.toml [daemon]";
  }
  if (Contains(f, "no suitable signature algorithm") || Contains(f, "no shared cipher") ||
      Contains(f, "missing") || Contains(f, "handshake failure")) {
    return "TLS handshake failed: the peer offered no grace agent-channel key (" + f + ")";
  }
  return "TLS handshake failed: " + f;
}

}  // namespace grace
