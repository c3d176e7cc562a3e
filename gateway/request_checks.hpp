// What the gateway decides about a request before it goes anywhere: parser limits, the reply a
// failed read deserves, Expect, credentials and route. Shared by the server and the fuzz target.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

#include "common/asio.hpp"
#include "common/config.hpp"
#include "common/errors.hpp"
#include "gateway/auth.hpp"
#include "gateway/request_mapper.hpp"

namespace courier::gateway {

using RequestParser = http::request_parser<http::string_body>;

// The limits a request is read with unless configured otherwise.
inline constexpr std::size_t kDefaultMaxBody = 8u << 20;
inline constexpr std::size_t kDefaultMaxHeader = 16u << 10;

void apply_limits(RequestParser& parser, std::size_t max_header, std::size_t max_body);

// A request answered with an error by the gateway itself, before any service sees it.
struct Refusal {
  ErrorKind kind = ErrorKind::kBadRequest;
  std::string detail;  // safe to send and to log
};

// The refusal a failed read deserves (431, 413, 400), or nullopt when the connection just ended
// (closed, timed out, reset): there is nobody to answer.
std::optional<Refusal> read_refusal(const beast::error_code& ec);

// Expect: 100-continue is the only expectation we meet; any other is refused.
std::optional<Refusal> check_expect(const HttpRequest& head);
bool expects_continue(const HttpRequest& head);

struct Admission {
  std::optional<Refusal> refusal;
  // The verified caller ("" with auth off); set once credentials pass, even if the route fails,
  // so the access log names who asked for a service that is not there.
  std::string subject;
  const ServiceConfig* service = nullptr;  // when admitted
  std::string target;                      // the route's target, when admitted
};

// The one check of credentials and route, run on the head of a request that waits for 100 Continue
// (so its body is never invited only to be refused) and on every complete request. Credentials come
// first: strangers learn nothing of the routes. A subject in `verified` was checked on the head,
// and is not checked again. Not for the gateway's own endpoints, which need no credentials.
Admission admit(const HttpRequest& request, const Authenticator& auth, const Settings& settings,
                std::chrono::system_clock::time_point now,
                const std::optional<std::string>& verified = std::nullopt);

// The error reply for a refusal. With `request` null (refused mid-read) it closes the connection.
HttpResponse refusal_response(const Refusal& refusal, const HttpRequest* request,
                              const Authenticator& auth);

}  // namespace courier::gateway
