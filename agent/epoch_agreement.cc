#include "agent/epoch_agreement.h"

#include <algorithm>

namespace grace {

Epoch AgreedEpoch(std::span<const EpochClaim> claims, uint64_t step) {
  Epoch e = 0;
  for (const EpochClaim& c : claims) {
    e = std::max<Epoch>(e, c.serving);
    if (c.committed != 0 && c.switch_step <= step) e = std::max<Epoch>(e, c.committed);
  }
  return e;
}

}  // namespace grace
