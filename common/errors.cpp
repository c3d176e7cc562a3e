#include "common/errors.hpp"

#include <nlohmann/json.hpp>

#include "common/config.hpp"

namespace courier {

int error_status(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kBadRequest:
      return 400;
    case ErrorKind::kUnauthorized:
      return 401;
    case ErrorKind::kUnknownService:
      return 404;
    case ErrorKind::kPayloadTooLarge:
      return 413;
    case ErrorKind::kHeadersTooLarge:
      return 431;
    case ErrorKind::kBadResponse:
    case ErrorKind::kWorkerLost:
      return 502;
    case ErrorKind::kUnavailable:
    case ErrorKind::kOverloaded:
    case ErrorKind::kBrokerUnavailable:
      return 503;
    case ErrorKind::kTimeout:
      return 504;
    case ErrorKind::kCancelled:
      return 499;
  }
  return 500;
}

std::string error_code(ErrorKind kind, std::string_view service) {
  const auto svc = [&](const char* suffix) {
    return service_env_prefix(std::string(service)) + suffix;
  };
  switch (kind) {
    case ErrorKind::kBadRequest:
      return "BAD_REQUEST";
    case ErrorKind::kUnauthorized:
      return "UNAUTHORIZED";
    case ErrorKind::kUnknownService:
      return "UNKNOWN_SERVICE";
    case ErrorKind::kPayloadTooLarge:
      return "PAYLOAD_TOO_LARGE";
    case ErrorKind::kHeadersTooLarge:
      return "HEADERS_TOO_LARGE";
    case ErrorKind::kBadResponse:
      return svc("_BAD_RESPONSE");
    case ErrorKind::kWorkerLost:
      return "WORKER_LOST";
    case ErrorKind::kUnavailable:
      return svc("_UNAVAILABLE");
    case ErrorKind::kOverloaded:
      return svc("_OVERLOADED");
    case ErrorKind::kBrokerUnavailable:
      return "BROKER_UNAVAILABLE";
    case ErrorKind::kTimeout:
      return svc("_TIMEOUT");
    case ErrorKind::kCancelled:
      return "CLIENT_CLOSED_REQUEST";
  }
  return "INTERNAL_ERROR";
}

std::string_view error_message(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kBadRequest:
      return "The request is malformed";
    case ErrorKind::kUnauthorized:
      return "Authentication is required";
    case ErrorKind::kUnknownService:
      return "No such service";
    case ErrorKind::kPayloadTooLarge:
      return "The request body is too large";
    case ErrorKind::kHeadersTooLarge:
      return "The request headers are too large";
    case ErrorKind::kBadResponse:
      return "The service sent an invalid response";
    case ErrorKind::kWorkerLost:
      return "The worker handling the request was lost";
    case ErrorKind::kUnavailable:
      return "The service is unavailable";
    case ErrorKind::kOverloaded:
      return "The service is overloaded; retry later";
    case ErrorKind::kBrokerUnavailable:
      return "The message broker is unavailable";
    case ErrorKind::kTimeout:
      return "The service did not answer in time";
    case ErrorKind::kCancelled:
      return "The client closed the request";
  }
  return "Internal error";
}

std::string error_json(std::string_view code, std::string_view message, std::string_view detail) {
  nlohmann::ordered_json j = {
      {"status", "error"}, {"code", code}, {"message", message}, {"detail", detail}};
  // Replace invalid UTF-8 rather than throw: detail may quote untrusted input.
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

ReplyEnvelope make_error_reply(ErrorKind kind, std::string_view service, std::string_view detail,
                               const protocol::CorrelationId& id) {
  ReplyEnvelope reply;
  reply.id = id;
  reply.status = static_cast<std::uint16_t>(error_status(kind));
  ErrorInfo info{error_code(kind, service), std::string(error_message(kind)), std::string(detail)};
  reply.body = error_json(info.code, info.message, info.detail);
  reply.headers.push_back({"Content-Type", "application/json"});
  reply.error = std::move(info);
  return reply;
}

}  // namespace courier
