// The agent channel's tls setting, as graced.toml ([agents] tls) and agent.toml ([daemon] tls)
// name it: "psk" (the default: TLS 1.3 with a key derived from the cluster secret,
// tls/agent_channel.h) or "off" (plaintext frames, for a test harness that reads them).
// Both sides must agree; each names a mismatch (TlsSettingHint) instead of timing out.
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"

namespace grace {

enum class AgentChannelTls { kOff, kPsk };

// "psk" or "off"; anything else is an error naming both choices (the caller adds the field).
StatusOr<AgentChannelTls> ParseAgentChannelTls(std::string_view text);
const char* AgentChannelTlsName(AgentChannelTls tls);

// What both sides' mismatch messages end with.
std::string TlsSettingHint();

}  // namespace grace
