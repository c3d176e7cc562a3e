// libFuzzer target: arbitrary bytes as an HTTP request through the gateway's parser settings and
// its request mapping (routing, request id, timeout header, header forwarding, error replies).
#include <cstddef>
#include <cstdint>

#include "common/asio.hpp"
#include "common/config.hpp"
#include "common/envelope.hpp"
#include "gateway/request_mapper.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace courier;
  http::request_parser<http::string_body> parser;
  parser.header_limit(16 * 1024);
  parser.body_limit(1 << 20);
  parser.eager(true);
  beast::error_code ec;
  parser.put(asio::buffer(data, size), ec);
  if (!ec && !parser.is_done()) parser.put_eof(ec);
  if (ec || !parser.is_header_done()) return 0;
  const auto& req = parser.get();

  static const ServiceConfig service = [] {
    ServiceConfig s;
    s.name = "rule-engine";
    return s;
  }();
  if (auto r = gateway::route(req.target())) (void)r->target.size();
  (void)gateway::valid_request_id(req["X-Request-ID"]);
  (void)gateway::request_budget(service, req["X-Request-Timeout"]);
  const auto headers = gateway::forwarded_headers(req, "127.0.0.1");
  ReplyEnvelope reply;
  reply.status = 200;
  reply.headers = headers;
  reply.body = req.body();
  auto res = gateway::to_http(std::move(reply), req, "id");
  (void)res.body().size();
  return 0;
}
