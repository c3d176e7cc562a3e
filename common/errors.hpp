// The error catalogue: every error Courier itself produces, with its HTTP status and code, and
// the one JSON shape they all share: {"status":"error","code":...,"message":...,"detail":...}.
#pragma once

#include <string>
#include <string_view>

#include "common/envelope.hpp"

namespace courier {

enum class ErrorKind {
  kBadRequest,         // 400 BAD_REQUEST
  kUnauthorized,       // 401 UNAUTHORIZED
  kUnknownService,     // 404 UNKNOWN_SERVICE
  kPayloadTooLarge,    // 413 PAYLOAD_TOO_LARGE
  kHeadersTooLarge,    // 431 HEADERS_TOO_LARGE
  kBadResponse,        // 502 <SVC>_BAD_RESPONSE
  kWorkerLost,         // 502 WORKER_LOST
  kUnavailable,        // 503 <SVC>_UNAVAILABLE (unreachable, no workers, circuit open)
  kOverloaded,         // 503 <SVC>_OVERLOADED (with Retry-After)
  kBrokerUnavailable,  // 503 BROKER_UNAVAILABLE
  kTimeout,            // 504 <SVC>_TIMEOUT
  // 499 CLIENT_CLOSED_REQUEST: the client went away before its answer; never reaches it, only
  // logs and metrics (NGINX's 499). A worker answers a cancelled request with it.
  kCancelled,
};

int error_status(ErrorKind kind);
// The code, with the service's prefix where the kind is per service.
std::string error_code(ErrorKind kind, std::string_view service);
std::string_view error_message(ErrorKind kind);

std::string error_json(std::string_view code, std::string_view message, std::string_view detail);

// A complete reply envelope for an error Courier produced (gateway, broker or worker).
ReplyEnvelope make_error_reply(ErrorKind kind, std::string_view service, std::string_view detail,
                               const protocol::CorrelationId& id = {});

}  // namespace courier
