// HKDF-SHA256 (RFC 5869), the one derivation of keys from the cluster secret: the agent
// channel's TLS key (tls/agent_channel.h) and the migration's weight-digest key
// (migrate/weight_digest.h) each derive their own under a versioned label, so that no key is
// the secret itself and no two uses share one. Any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "core/status.h"

namespace grace {

// Fills `out` with HKDF-SHA256(ikm = `key`, salt, info). An empty `salt` means none (RFC 5869:
// a string of zeros). Fails only when OpenSSL cannot derive.
Status HkdfSha256(std::string_view key, std::string_view salt, std::string_view info,
                  std::span<uint8_t> out);

}  // namespace grace
