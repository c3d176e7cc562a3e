// Correlation IDs: 128 bits, unique per request. A random 64-bit prefix per process and a
// 64-bit counter make collisions between processes negligible and within one process impossible.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "common/protocol.hpp"

namespace courier {

class IdGenerator {
 public:
  explicit IdGenerator(std::uint64_t prefix);
  static std::uint64_t random_prefix();
  protocol::CorrelationId next();  // thread-safe

 private:
  std::uint64_t prefix_;
  std::atomic<std::uint64_t> counter_{0};
};

std::string to_hex(const protocol::CorrelationId& id);

}  // namespace courier
