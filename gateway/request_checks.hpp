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

// The most a connection's read buffer may hold. Beast bounds the head (max_header) and the body
// (max_body, consumed as it arrives), but not a chunk-size line with its extensions nor the
// trailer section, which it buffers whole: the buffer's own limit bounds those, and a read that
// hits it is refused 431 (see read_refusal).
std::size_t read_buffer_limit(std::size_t max_header);

// A request answered with an error by the gateway itself, before any service sees it.
struct Refusal {
  ErrorKind kind = ErrorKind::kBadRequest;
  std::string detail;  // safe to send and to log
};

// The refusal a failed read deserves (431, 413, 400), or nullopt when the connection just ended
// (closed, timed out, reset): there is nobody to answer.
std::optional<Refusal> read_refusal(const beast::error_code& ec);

// Framing Beast lets through that would let a body be read as the next request (RFC 9112 6.1,
// 6.3): Transfer-Encoding other than one field that is exactly "chunked" (case-insensitive),
// Transfer-Encoding in HTTP/1.0, or beside Content-Length. Run on the head, before any body is
// read; a refusal closes the connection. (Content-Length values that differ are refused by Beast.)
std::optional<Refusal> check_framing(const HttpRequest& head);

// A request refused on its head (credentials, route) is answered at once. Its body is read and
// thrown away, keeping the connection, only when that is cheap: none, or a Content-Length of at
// most kCheapDrain. Otherwise the answer closes the connection and the body is never read.
inline constexpr std::size_t kCheapDrain = 16u << 10;
bool cheap_to_drain(const RequestParser& parser);

// Beast's parser adds the trailer fields of a chunked body to the container holding the head's
// fields, where they would pass for headers (credentials, Idempotency-Key, X-Request-ID,
// X-Request-Timeout) and be forwarded. Taken once the head is read, a HeadSnapshot puts the head
// back once the body is read: trailers are dropped. It copies only for chunked requests.
class HeadSnapshot {
 public:
  explicit HeadSnapshot(const RequestParser& parser);
  void restore(RequestParser& parser);

 private:
  std::optional<http::request_header<>> head_;
};

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
