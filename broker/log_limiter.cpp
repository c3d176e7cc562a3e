#include "broker/log_limiter.hpp"

#include <spdlog/spdlog.h>

namespace courier::broker {

void LogLimiter::note(Clock::time_point now, std::string_view detail) {
  ++total_;
  if (logged_ && now - last_ < every_) {
    ++unlogged_;
    return;
  }
  if (unlogged_ > 0) {
    spdlog::warn("{}: {} (and {} more not logged since the last line; {} in all)", what_, detail,
                 unlogged_, total_);
  } else {
    spdlog::warn("{}: {}", what_, detail);
  }
  logged_ = true;
  last_ = now;
  unlogged_ = 0;
}

}  // namespace courier::broker
