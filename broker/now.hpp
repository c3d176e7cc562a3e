// The broker's clocks and peer names, shared by its parts. Time is passed in, never read inside the
// routing logic, so that tests drive every liveness, grace and deadline rule without sleeping.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace courier::broker {

using Clock = std::chrono::steady_clock;
using Identity = std::string;  // a ROUTER routing id

// Both clocks: steady for liveness, wall for request deadlines (which travel between processes as
// Unix epoch milliseconds).
struct Now {
  Clock::time_point steady;
  std::uint64_t wall_ms = 0;
  static Now current();
};

}  // namespace courier::broker
