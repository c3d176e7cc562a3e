// Correlation ids and generated request ids: 128 bits each from the kernel's CSPRNG (getrandom(2)),
// so that ids seen (in logs, in X-Request-ID, by an upstream) tell nothing about any other id.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "common/protocol.hpp"

namespace courier {

// Fills `out` from the kernel's CSPRNG. Each thread reads it in batches (one getrandom call per
// 32 ids), so an id costs a copy, not a system call. Throws std::system_error if the kernel
// refuses, which IdGenerator's constructor makes a start-up failure.
void random_bytes(std::span<std::uint8_t> out);

class IdGenerator {
 public:
  IdGenerator();  // draws once, so that a CSPRNG that does not work stops start-up

  // Thread-safe. Unique in practice (a collision among 2^64 ids has a chance of about 2^-64) and
  // unpredictable: the broker routes a reply by its correlation id, so it must not be guessable.
  protocol::CorrelationId next();
  // The X-Request-ID the gateway generates when the client sent none: 32 hex digits of its own
  // randomness, independent of the correlation id, so showing it to the client (or the upstream)
  // reveals nothing that addresses any request.
  std::string next_request_id();
};

std::string to_hex(std::span<const std::uint8_t> bytes);

}  // namespace courier
