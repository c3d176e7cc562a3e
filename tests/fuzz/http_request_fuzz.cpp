// libFuzzer target: arbitrary bytes as an HTTP request through the gateway's own request handling:
// the server's parser limits and checks (read errors, framing, Expect, credentials, route), the
// admin endpoints, envelope assembly and the reply mapping; only the sockets are left out.
#include <cstddef>
#include <cstdint>
#include <optional>

#include "common/asio.hpp"
#include "common/config.hpp"
#include "common/envelope.hpp"
#include "gateway/admin.hpp"
#include "gateway/request_checks.hpp"
#include "gateway/request_mapper.hpp"

namespace {

using namespace courier;
using namespace courier::gateway;

const Settings& settings() {
  static const Settings s = [] {
    Settings out;
    ServiceConfig svc;
    svc.name = "rule-engine";
    out.services[svc.name] = svc;
    return out;
  }();
  return s;
}

// Both credentials on, so every branch of admission is reachable ("X-API-Key: k1" passes).
const Authenticator& auth() {
  static const Authenticator a(
      AuthOptions{.jwt_secret = std::string(32, 's'), .api_keys = {{"alice", "k1"}}});
  return a;
}

// The fuzzer's peer (127.0.0.1) is trusted, so the trusted-proxy branch is reachable too.
const TrustedProxies& trusted() {
  static const TrustedProxies t = TrustedProxies::parse("fuzz", "127.0.0.0/8");
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto now = std::chrono::system_clock::time_point{} + std::chrono::hours(473'000);
  RequestParser parser;
  apply_limits(parser, kDefaultMaxHeader, kDefaultMaxBody);
  // As the server reads: the head first, its framing checked, then the body, trailers dropped.
  beast::error_code ec;
  const auto used = parser.put(asio::buffer(data, size), ec);
  std::optional<HeadSnapshot> head_only;
  if (!ec && parser.is_header_done()) {
    if (const auto refusal = check_framing(parser.get())) {
      (void)refusal_response(*refusal, nullptr, auth()).body().size();
      return 0;
    }
    head_only.emplace(parser);
    parser.eager(true);
    if (!parser.is_done()) parser.put(asio::buffer(data + used, size - used), ec);
  }
  if (!ec && !parser.is_done()) parser.put_eof(ec);
  if (!ec && head_only) head_only->restore(parser);
  if (ec) {
    if (const auto refusal = read_refusal(ec)) {
      (void)refusal_response(*refusal, nullptr, auth()).body().size();
    }
    return 0;
  }
  auto& req = parser.get();
  if (const auto refusal = check_expect(req)) {
    (void)refusal_response(*refusal, nullptr, auth()).body().size();
    return 0;
  }
  if (is_admin_endpoint(req.method(), req.target())) {
    static const GatewayMetrics metrics;
    static const ServiceStats stats({"rule-engine"});
    AdminState state{settings(), metrics, stats, {}, 0, {}};
    (void)admin_response(req, state).body().size();
    return 0;
  }
  auto admission = admit(req, auth(), settings(), now);
  if (admission.refusal) {
    (void)refusal_response(*admission.refusal, &req, auth()).body().size();
    return 0;
  }
  auto mapped = to_envelope(req, {.service = admission.service,
                                  .target = std::move(admission.target),
                                  .client_address = "127.0.0.1",
                                  .subject = admission.subject,
                                  .strip_api_key = auth().accepts_api_keys(),
                                  .id = {},
                                  .now_ms = 0,
                                  .trusted_proxies = &trusted()});
  if (mapped.error) return 0;
  ReplyEnvelope reply;
  reply.status = 200;
  reply.headers = mapped.envelope.headers;
  reply.body = std::move(mapped.envelope.body);
  auto res = checked_response(std::move(reply), req, "rule-engine", mapped.request_id);
  (void)res.response.body().size();
  return 0;
}
