// Pure translation between HTTP and envelopes: route a target to a service, check the path, the
// request id and timeout headers, assemble the request envelope, and check a reply and turn it
// into an HTTP response.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "common/asio.hpp"
#include "common/config.hpp"
#include "common/envelope.hpp"
#include "common/frames.hpp"
#include "common/trace_context.hpp"
#include "gateway/trusted_proxies.hpp"

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

// Why the path of a route's target (the part before '?') may not go upstream, or "" when it may:
// it holds a "." or ".." segment. Segments are split at '/' and, since some servers decode or
// convert them before splitting, also at '\\', "%2F" and "%5C" (any case); a segment's dots
// may be percent-encoded ("%2e", ".%2E"), and its path parameters (";..." or "%3B...", which
// Tomcat and others strip) do not count. Such a target would climb above the service root
// (/svc/../admin -> /base/../admin) or mean something else to the upstream than to us; clients
// resolve dot segments themselves before sending (RFC 3986 5.2.4), so only odd ones send them.
// Nothing is normalised: the target goes upstream byte for byte, or not at all.
std::string_view path_problem(std::string_view target);

// Who sent the request and how the gateway treats what it says about the hops before it.
struct ForwardingRules {
  std::string_view client_address;  // the TCP peer
  // The peer is a trusted proxy: its Forwarded, X-Forwarded-* and X-Real-IP headers are kept
  // (X-Forwarded-For extended with the peer); from anyone else they are dropped.
  bool trusted_peer = false;
  // The header the worker puts the service's own credential in (auth.header), if any: a
  // lookalike of it is dropped like one of Courier's own headers.
  std::string_view auth_header{};
};

// Headers of the HTTP request as an ordered list for the upstream:
// - hop-by-hop ones removed (and those the Connection header names);
// - every X-Courier-* removed (only the gateway names a subject), and every header whose name
//   differs from one Courier sets or reads itself only by '_' for '-' or by case
//   (X_Courier_Subject, X_Forwarded_For, X_Request_ID, X_API_Key, ...);
// - Forwarded, X-Forwarded-*, X-Real-IP (and X-Client-IP, True-Client-IP, X-Cluster-Client-IP,
//   X-Original-URL, X-Rewrite-URL, which frameworks also believe) kept only from a trusted peer;
// - then X-Forwarded-For (the trusted chain plus the peer, else the peer alone),
//   X-Forwarded-Proto ("http") and X-Forwarded-Host (the request's Host) set by the gateway, the
//   last two only when a trusted peer did not send its own.
Headers forwarded_headers(const HttpRequest& request, const ForwardingRules& rules);

// Everything besides the HTTP request itself that goes into its envelope.
struct EnvelopeContext {
  const ServiceConfig* service = nullptr;  // outlives the mapped request (header.service views it)
  std::string target;                      // the route's target
  std::string_view client_address;
  std::string_view subject;    // the verified caller; "" with auth off
  bool strip_api_key = false;  // X-API-Key is the gateway's own credential, not the upstream's
  protocol::CorrelationId id{};
  std::uint64_t now_ms = 0;  // Unix epoch milliseconds; the deadline counts from here
  // The peers whose forwarding headers are believed; null: nobody's.
  const TrustedProxies* trusted_proxies = nullptr;
  // The X-Request-ID to use when the client sent no valid one (IdGenerator::next_request_id:
  // random, unrelated to `id`). Empty: the correlation id in hex, as before (tests, fuzzing).
  std::string generated_request_id{};
  // The ids a new trace or this hop's span take (W3C trace context, common/trace_context).
  trace::FreshIds trace_ids = trace::FreshIds::random();
};

struct MappedRequest {
  // The client's X-Request-ID when valid, else the generated one; set even on `error`.
  std::string request_id;
  // The trace the upstream sees (the caller's continued, or a new one); set even on `error`.
  std::string trace_id;
  // The request cannot go (bad X-Request-Timeout, dot segments in the path): answer this.
  std::optional<HttpResponse> error;
  std::chrono::milliseconds budget{0};
  protocol::RequestHeader header;
  RequestEnvelope envelope;
};

// The envelope for `request` and the frames' header (deadline, retry-safe flag). Moves the body
// out of `request`; the rest stays for the response and the access log. The upstream gets a
// traceparent for this hop and the caller's tracestate when its traceparent was valid
// (trace::next_hop); whatever the client sent under those names is replaced.
MappedRequest to_envelope(HttpRequest& request, EnvelopeContext context);

// Limits on the head of a reply written to a client. A worker reads at most 64 KiB of an
// upstream's head; the slack is for what the worker adds (X-Courier-Attempts).
inline constexpr std::size_t kMaxReplyHeaders = 512;
inline constexpr std::size_t kMaxReplyHeaderBytes = 96u << 10;  // name + value + 4, summed

// Why `reply` cannot be written to the client as it is, or "" when it can (the reply comes from
// a worker, which a hostile peer may impersonate, so nothing in it is taken on trust): a status
// outside 200-599 (a final response: 1xx are interim, 101 would switch protocols, which Courier
// does not do); a header name that is not a token; a value with CR, LF, NUL, DEL or another
// control character but HTAB; more than kMaxReplyHeaders fields or kMaxReplyHeaderBytes of them;
// for a HEAD request, a Content-Length that is not one decimal number. The text names the field
// by position, never by its bytes, so it is safe to log and to send.
std::string reply_problem(const ReplyEnvelope& reply, const HttpRequest& request);

// The reply as the client's response. Expects a reply reply_problem() passed: framing is the
// gateway's own (Content-Length from the body; the reply's Content-Length kept only for HEAD),
// hop-by-hop headers and those the reply's Connection names are dropped, X-Request-ID is ours.
HttpResponse to_http(ReplyEnvelope&& reply, const HttpRequest& request,
                     std::string_view request_id);

struct ClientReply {
  HttpResponse response;
  // Why the reply was refused with 502 <SVC>_BAD_RESPONSE, for the log; "" when it went through.
  std::string problem;
  std::uint32_t attempts = 0;  // the worker's upstream attempts, for the access log
  std::string code;            // Courier's error code when Courier made the reply, else ""
  std::string worker;          // the worker that answered
  std::optional<std::uint64_t> upstream_us;  // its time on the upstream, when it went there
};

// to_http after reply_problem: the reply, or 502 <SVC>_BAD_RESPONSE (the usual JSON error, with
// our X-Request-ID) and nothing of the bad reply.
ClientReply checked_response(ReplyEnvelope&& reply, const HttpRequest& request,
                             std::string_view service, std::string_view request_id);

HttpResponse error_response(int kind, std::string_view service, std::string_view detail,
                            const HttpRequest* request, std::string_view request_id);

}  // namespace courier::gateway
