// Pure translation between HTTP and envelopes: route a target to a service, check the request
// id and timeout headers, assemble the request envelope, and turn a reply into an HTTP response.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "common/asio.hpp"
#include "common/config.hpp"
#include "common/envelope.hpp"
#include "common/frames.hpp"

namespace courier::gateway {

struct Route {
  std::string service;
  std::string target;  // "/path?query" as received, "/" when only the service was given
};

// "/rule-engine/health?x=1" -> {"rule-engine", "/health?x=1"}. nullopt if the target has no
// service segment or is not origin-form.
std::optional<Route> route(std::string_view target);

// 1-128 characters of [A-Za-z0-9._:-]: safe to log and to echo.
bool valid_request_id(std::string_view id);

// The request's time budget: the service timeout, shortened (never lengthened) by a valid
// X-Request-Timeout in seconds. nullopt when the header is present but invalid.
std::optional<std::chrono::milliseconds> request_budget(const ServiceConfig& service,
                                                        std::string_view timeout_header);

using HttpRequest = http::request<http::string_body>;
using HttpResponse = http::response<http::string_body>;

// Carries the authenticated caller to the worker; a client-sent one is always dropped.
inline constexpr std::string_view kSubjectHeader = "X-Courier-Subject";

// Headers of the HTTP request as an ordered list, hop-by-hop ones and any X-Courier-Subject
// removed, and X-Forwarded-For extended with the client's address.
Headers forwarded_headers(const HttpRequest& request, std::string_view client_address);

// Everything besides the HTTP request itself that goes into its envelope.
struct EnvelopeContext {
  const ServiceConfig* service = nullptr;  // outlives the mapped request (header.service views it)
  std::string target;                      // the route's target
  std::string_view client_address;
  std::string_view subject;    // the verified caller; "" with auth off
  bool strip_api_key = false;  // X-API-Key is the gateway's own credential, not the upstream's
  protocol::CorrelationId id{};
  std::uint64_t now_ms = 0;  // Unix epoch milliseconds; the deadline counts from here
};

struct MappedRequest {
  // The client's X-Request-ID when valid, else the correlation id in hex; set even on `error`.
  std::string request_id;
  std::optional<HttpResponse> error;  // the request cannot go (bad X-Request-Timeout): answer this
  std::chrono::milliseconds budget{0};
  protocol::RequestHeader header;
  RequestEnvelope envelope;
};

// The envelope for `request` and the frames' header (deadline, retry-safe flag). Moves the body
// out of `request`; the rest stays for the response and the access log.
MappedRequest to_envelope(HttpRequest& request, EnvelopeContext context);

HttpResponse to_http(ReplyEnvelope&& reply, const HttpRequest& request,
                     std::string_view request_id);
HttpResponse error_response(int kind, std::string_view service, std::string_view detail,
                            const HttpRequest* request, std::string_view request_id);

}  // namespace courier::gateway
