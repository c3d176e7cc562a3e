#include "common/envelope.hpp"

#include <gtest/gtest.h>

#include <msgpack.hpp>
#include <random>

namespace courier {
namespace {

RequestEnvelope sample_request() {
  RequestEnvelope r;
  for (std::size_t i = 0; i < r.id.size(); ++i) r.id[i] = static_cast<std::uint8_t>(i * 7);
  r.service = "rule-engine";
  r.method = "POST";
  r.target = "/play/scenario?x=1&x=2";
  r.headers = {{"Content-Type", "application/json"}, {"X-Dup", "a"}, {"X-Dup", "b"}};
  r.body = std::string("bin\0ary\xff", 8);
  r.deadline_ms = 1'800'000'000'123;
  r.attempt = 2;
  r.request_id = "req-1";
  return r;
}

ReplyEnvelope sample_reply() {
  ReplyEnvelope r;
  r.id = sample_request().id;
  r.status = 503;
  r.headers = {{"Set-Cookie", "a=1"}, {"Set-Cookie", "b=2"}};
  r.body = "{}";
  r.error = ErrorInfo{"RULE_ENGINE_UNAVAILABLE", "unavailable", "connection refused"};
  r.attempts = 3;
  r.worker_id = "w-1";
  r.upstream_us = 12345;
  return r;
}

std::string bytes(const zmq::message_t& m) { return std::string(m.data<char>(), m.size()); }

TEST(Envelope, RequestRoundTripsExactly) {
  const auto in = sample_request();
  RequestEnvelope out;
  ASSERT_FALSE(decode(bytes(encode(in)), out));
  EXPECT_EQ(out, in);
}

TEST(Envelope, ReplyRoundTripsWithAndWithoutError) {
  auto in = sample_reply();
  ReplyEnvelope out;
  ASSERT_FALSE(decode(bytes(encode(in)), out));
  EXPECT_EQ(out, in);
  in.error.reset();
  in.status = 200;
  ASSERT_FALSE(decode(bytes(encode(in)), out));
  EXPECT_EQ(out, in);
}

TEST(Envelope, EveryTruncationIsAnErrorValue) {
  const auto full = bytes(encode(sample_request()));
  for (std::size_t n = 0; n < full.size(); ++n) {
    RequestEnvelope out;
    EXPECT_TRUE(decode(std::string_view(full).substr(0, n), out)) << "length " << n;
  }
  const auto reply = bytes(encode(sample_reply()));
  for (std::size_t n = 0; n < reply.size(); ++n) {
    ReplyEnvelope out;
    EXPECT_TRUE(decode(std::string_view(reply).substr(0, n), out)) << "length " << n;
  }
}

TEST(Envelope, TrailingBytesAreRejected) {
  auto data = bytes(encode(sample_request()));
  data += '\0';
  RequestEnvelope out;
  EXPECT_EQ(decode(data, out), EnvelopeError::kMalformed);
}

TEST(Envelope, WrongTypesAreRejected) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> p(buf);
  p.pack_array(10);
  p.pack_uint8(1);
  p.pack(std::string("not sixteen bytes"));  // id of the wrong type and size
  for (int i = 0; i < 8; ++i) p.pack_nil();
  RequestEnvelope out;
  EXPECT_EQ(decode({buf.data(), buf.size()}, out), EnvelopeError::kWrongType);

  msgpack::sbuffer map_buf;
  msgpack::packer<msgpack::sbuffer> m(map_buf);
  m.pack_map(1);
  m.pack(1);
  m.pack(2);
  EXPECT_TRUE(decode({map_buf.data(), map_buf.size()}, out));
}

TEST(Envelope, UnknownVersionIsRejected) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> p(buf);
  p.pack_array(10);
  p.pack_uint8(2);
  for (int i = 0; i < 9; ++i) p.pack_nil();
  RequestEnvelope out;
  EXPECT_EQ(decode({buf.data(), buf.size()}, out), EnvelopeError::kBadVersion);
}

TEST(Envelope, OversizedFieldsAreRejectedWithoutAllocating) {
  // A bin header claiming 4 GiB with no data behind it.
  const std::string huge_bin = "\x9a\x01\xc6\xff\xff\xff\xff";
  RequestEnvelope out;
  EXPECT_TRUE(decode(huge_bin, out));
  // An array header claiming 2^32-1 elements.
  const std::string huge_array = "\xdd\xff\xff\xff\xff";
  EXPECT_TRUE(decode(huge_array, out));
  // Too many headers.
  auto r = sample_request();
  r.headers.assign(kMaxEnvelopeHeaders + 1, Header{"a", "b"});
  EXPECT_TRUE(decode(bytes(encode(r)), out));
  // A reply with an impossible status.
  auto reply = sample_reply();
  reply.status = 42;
  ReplyEnvelope rout;
  EXPECT_EQ(decode(bytes(encode(reply)), rout), EnvelopeError::kBadValue);
}

TEST(Envelope, DeepNestingIsRejected) {
  std::string nested(200, '\x91');  // [[[[...]]]]
  nested += '\x01';
  RequestEnvelope out;
  EXPECT_TRUE(decode(nested, out));
}

TEST(Envelope, RandomInputNeverCrashes) {
  std::mt19937 rng(12345);
  const auto valid = bytes(encode(sample_request()));
  for (int i = 0; i < 20'000; ++i) {
    std::string data;
    if (i % 2) {
      data.resize(rng() % 256);
      for (auto& c : data) c = static_cast<char>(rng());
    } else {
      data = valid;  // a valid envelope with a few bytes flipped
      for (int k = 0; k < 3; ++k) data[rng() % data.size()] = static_cast<char>(rng());
    }
    RequestEnvelope req;
    ReplyEnvelope rep;
    (void)decode(data, req);
    (void)decode(data, rep);
  }
  SUCCEED();
}

}  // namespace
}  // namespace courier
