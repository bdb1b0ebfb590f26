// libFuzzer target: arbitrary bytes as the body of PUT /api/v1/policy, through the same steps
// as RestApi (daemon/rest_api.cc): JSON parsing without exceptions, then ApplyPolicyPatch on the
// default policy. It must never crash, hang or throw; a patch it accepts must give settings
// whose own JSON is accepted again and reproduces them (what GET /api/v1/policy then shows).
// Seeds: a few policy bodies written by scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "daemon/policy_settings.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const nlohmann::json patch = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (patch.is_discarded()) return 0;
  const grace::PolicySettings defaults;
  auto next = grace::ApplyPolicyPatch(defaults, patch);
  if (!next.ok()) {
    if (next.status().message().empty()) __builtin_trap();  // every refusal names its field
    return 0;
  }
  const nlohmann::json shown = next->ToJson();
  auto again = grace::ApplyPolicyPatch(defaults, shown);
  if (!again.ok() || again->ToJson() != shown) __builtin_trap();
  (void)shown.dump();
  return 0;
}
