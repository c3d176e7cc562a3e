#include "gateway/request_checks.hpp"

#include "common/http_headers.hpp"

namespace courier::gateway {

void apply_limits(RequestParser& parser, std::size_t max_header, std::size_t max_body) {
  parser.header_limit(static_cast<std::uint32_t>(max_header));
  parser.body_limit(max_body);
}

std::size_t read_buffer_limit(std::size_t max_header) {
  // Above the head limit, so that an oversized head is still refused as such (431 either way).
  return max_header + (16u << 10);
}

std::optional<Refusal> read_refusal(const beast::error_code& ec) {
  if (ec == http::error::header_limit) return Refusal{ErrorKind::kHeadersTooLarge, ec.message()};
  if (ec == http::error::buffer_overflow) {
    return Refusal{ErrorKind::kHeadersTooLarge, "chunk line or trailer section too long"};
  }
  if (ec == http::error::body_limit) return Refusal{ErrorKind::kPayloadTooLarge, ec.message()};
  if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message) {
    return Refusal{ErrorKind::kBadRequest, ec.message()};
  }
  return std::nullopt;
}

namespace {

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::optional<Refusal> check_framing(const HttpRequest& head) {
  const auto encodings = head.count(http::field::transfer_encoding);
  if (encodings == 0) return std::nullopt;
  if (head.version() < 11) {
    return Refusal{ErrorKind::kBadRequest, "Transfer-Encoding is not allowed in HTTP/1.0"};
  }
  if (encodings > 1 || !iequals(trim_ows(head[http::field::transfer_encoding]), "chunked")) {
    return Refusal{ErrorKind::kBadRequest, "Transfer-Encoding must be exactly chunked"};
  }
  if (head.count(http::field::content_length) > 0) {
    return Refusal{ErrorKind::kBadRequest, "Transfer-Encoding and Content-Length together"};
  }
  return std::nullopt;
}

bool cheap_to_drain(const RequestParser& parser) {
  if (parser.is_done()) return true;
  if (parser.chunked()) return false;
  const auto length = parser.content_length();
  return !length || *length <= kCheapDrain;
}

HeadSnapshot::HeadSnapshot(const RequestParser& parser) {
  if (parser.chunked()) head_ = parser.get().base();
}

void HeadSnapshot::restore(RequestParser& parser) {
  if (head_) parser.get().base() = std::move(*head_);
  head_.reset();
}

std::optional<Refusal> check_expect(const HttpRequest& head) {
  const auto expect = head[http::field::expect];
  if (expect.empty() || iequals(expect, "100-continue")) return std::nullopt;
  return Refusal{ErrorKind::kBadRequest, "unsupported Expect header"};
}

bool expects_continue(const HttpRequest& head) {
  return iequals(head[http::field::expect], "100-continue");
}

Admission admit(const HttpRequest& request, const Authenticator& auth, const Settings& settings,
                std::chrono::system_clock::time_point now,
                const std::optional<std::string>& verified) {
  Admission out;
  if (verified) {
    out.subject = *verified;
  } else if (auth.enabled()) {
    auto result = auth.check(request[http::field::authorization], request["X-API-Key"], now);
    if (!result.ok) {
      out.refusal = Refusal{ErrorKind::kUnauthorized, std::move(result.reason)};
      return out;
    }
    out.subject = std::move(result.subject);
  }
  const auto target = request.target();
  auto route_result = route(target);
  const ServiceConfig* service = route_result ? settings.find(route_result->service) : nullptr;
  if (!service) {
    out.refusal =
        Refusal{ErrorKind::kUnknownService, "no service at " + std::string(target.substr(0, 200))};
    return out;
  }
  out.service = service;
  out.target = std::move(route_result->target);
  return out;
}

HttpResponse refusal_response(const Refusal& refusal, const HttpRequest* request,
                              const Authenticator& auth) {
  auto res = error_response(static_cast<int>(refusal.kind), "", refusal.detail, request, "");
  // The challenge tells a client which credential would do, when bearer tokens count.
  if (refusal.kind == ErrorKind::kUnauthorized && auth.accepts_bearer()) {
    res.set(http::field::www_authenticate, "Bearer");
  }
  if (!request) res.keep_alive(false);
  return res;
}

}  // namespace courier::gateway
