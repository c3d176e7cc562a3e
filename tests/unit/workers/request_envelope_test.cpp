// A REQUEST envelope comes from the network (the broker's socket, or whoever reached it): the
// worker decodes it as hostile input, and nothing a forged one carries may reach the upstream as
// anything but the one well-formed request it describes.
#include <gtest/gtest.h>

#include <msgpack.hpp>

#include "common/envelope.hpp"
#include "workers/forwarder.hpp"

namespace courier::workers {
namespace {

RequestEnvelope valid() {
  RequestEnvelope r;
  r.id.fill(7);
  r.service = "rule-engine";
  r.method = "POST";
  r.target = "/orders?x=1";
  r.headers = {{"Content-Type", "application/json"}, {"X-Obs", "caf\xc3\xa9\tok"}};
  r.body = "{}";
  r.request_id = "req-1";
  return r;
}

std::error_code round_trip(const RequestEnvelope& r) {
  const auto message = encode(r);
  RequestEnvelope out;
  return decode(std::string_view(message.data<char>(), message.size()), out);
}

ServiceConfig service() {
  ServiceConfig s;
  s.name = "rule-engine";
  s.upstream = {"rules", 8080, "/api", "http://rules:8080/api"};
  return s;
}

TEST(RequestEnvelope, AWellFormedRequestDecodesAndCanBeSent) {
  EXPECT_FALSE(round_trip(valid()));
  EXPECT_TRUE(build_upstream_request(valid(), service()));
}

TEST(RequestEnvelope, LineBreaksInHeaderValuesAreRefusedAtDecoding) {
  // The smuggling attempt: a header value that ends the head and starts a second request.
  for (const std::string& value :
       {std::string("1\r\n\r\nGET /admin HTTP/1.1\r\nHost: x"), std::string("a\nb"),
        std::string("a\rb"), std::string("a\0b", 3)}) {
    auto r = valid();
    r.headers.push_back({"X-Forged", value});
    EXPECT_EQ(round_trip(r), EnvelopeError::kBadValue);
    EXPECT_FALSE(build_upstream_request(r, service())) << "and refused again before sending";
  }
}

TEST(RequestEnvelope, HeaderNamesMustBeTokens) {
  for (const std::string name : {"X Forged", "X-Forged:", "X-\r\nInjected", "X-F\xc3\xa9", "(x)"}) {
    auto r = valid();
    r.headers.push_back({name, "v"});
    EXPECT_EQ(round_trip(r), EnvelopeError::kBadValue) << name;
    EXPECT_FALSE(build_upstream_request(r, service())) << name;
  }
}

TEST(RequestEnvelope, MethodMustBeAToken) {
  for (const std::string method : {"GET /admin HTTP/1.1\r\n", "GET ", "G\tET", "P\x80ST", "a,b"}) {
    auto r = valid();
    r.method = method;
    EXPECT_EQ(round_trip(r), EnvelopeError::kBadValue) << method;
    EXPECT_FALSE(build_upstream_request(r, service())) << method;
  }
}

TEST(RequestEnvelope, TargetWithWhitespaceOrControlsIsRefused) {
  for (const std::string& target :
       {std::string("/a HTTP/1.1\r\nX: y"), std::string("/a b"), std::string("/a\tb"),
        std::string("/a\x7f"), std::string("/a\0b", 4)}) {
    auto r = valid();
    r.target = target;
    EXPECT_EQ(round_trip(r), EnvelopeError::kBadValue);
    EXPECT_FALSE(build_upstream_request(r, service()));
  }
}

TEST(RequestEnvelope, RequestIdWithControlsIsRefused) {
  auto r = valid();
  r.request_id = "id\r\nX-Courier-Subject: admin";
  EXPECT_EQ(round_trip(r), EnvelopeError::kBadValue);
  EXPECT_FALSE(build_upstream_request(r, service()));
}

// Packs a version-1 request array with `headers` packed by the caller.
template <class PackHeaders>
std::string forged(PackHeaders pack_headers) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(10);
  p.pack_uint8(protocol::kEnvelopeVersion);
  const std::string id(protocol::CorrelationId{}.size(), '\x01');
  p.pack_bin(static_cast<std::uint32_t>(id.size()));
  p.pack_bin_body(id.data(), static_cast<std::uint32_t>(id.size()));
  p.pack(std::string("rule-engine"));
  p.pack(std::string("GET"));
  p.pack(std::string("/"));
  pack_headers(p);
  p.pack(std::string());
  p.pack_uint64(0);
  p.pack_uint32(0);
  p.pack(std::string("r"));
  return std::string(buffer.data(), buffer.size());
}

TEST(RequestEnvelope, HeadersOfTheWrongShapeOrCountAreRefused) {
  RequestEnvelope out;
  // A map instead of an array of pairs.
  EXPECT_TRUE(decode(forged([](auto& p) {
                       p.pack_map(1);
                       p.pack(std::string("a"));
                       p.pack(std::string("b"));
                     }),
                     out));
  // A value that is a number, and a pair of three.
  EXPECT_EQ(decode(forged([](auto& p) {
                     p.pack_array(1);
                     p.pack_array(2);
                     p.pack(std::string("X-A"));
                     p.pack(42);
                   }),
                   out),
            EnvelopeError::kWrongType);
  EXPECT_EQ(decode(forged([](auto& p) {
                     p.pack_array(1);
                     p.pack_array(3);
                     p.pack(std::string("X-A"));
                     p.pack(std::string("b"));
                     p.pack(std::string("c"));
                   }),
                   out),
            EnvelopeError::kWrongType);
  // More headers than any request may carry: refused before they are copied.
  EXPECT_TRUE(decode(forged([](auto& p) {
                       p.pack_array(static_cast<std::uint32_t>(kMaxEnvelopeHeaders + 1));
                       for (std::size_t i = 0; i <= kMaxEnvelopeHeaders; ++i) {
                         p.pack_array(2);
                         p.pack(std::string("X-A"));
                         p.pack(std::string("b"));
                       }
                     }),
                     out));
}

}  // namespace
}  // namespace courier::workers
