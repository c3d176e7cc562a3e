// Pure translation between HTTP and envelopes: route a target to a service, check the request
// id and timeout headers, build the request envelope, and turn a reply into an HTTP response.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "common/asio.hpp"
#include "common/config.hpp"
#include "common/envelope.hpp"

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

HttpResponse to_http(ReplyEnvelope&& reply, const HttpRequest& request,
                     std::string_view request_id);
HttpResponse error_response(int kind, std::string_view service, std::string_view detail,
                            const HttpRequest* request, std::string_view request_id);

}  // namespace courier::gateway
