// Logging of events a hostile peer can cause at will (garbage frames, refused peers): the first
// one at once, then at most one summary line per interval, never one line per message.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

#include "broker/now.hpp"

namespace courier::broker {

class LogLimiter {
 public:
  explicit LogLimiter(std::string_view what, Clock::duration every = std::chrono::seconds(10))
      : what_(what), every_(every) {}

  // Counts one event; logs it (with how many were not logged since the last line) if it is the
  // first or the interval has passed. `detail` says what this one was.
  void note(Clock::time_point now, std::string_view detail);

  std::uint64_t total() const { return total_; }

 private:
  std::string_view what_;
  Clock::duration every_;
  std::uint64_t total_ = 0;
  std::uint64_t unlogged_ = 0;
  bool logged_ = false;
  Clock::time_point last_{};
};

}  // namespace courier::broker
