#include "common/frames.hpp"

#include <gtest/gtest.h>

namespace courier::protocol {
namespace {

Frames request_frames() {
  RequestHeader h;
  h.service = "ai-gm";
  h.id.fill(0xab);
  h.deadline_ms = 0x0102030405060708ull;
  h.flags = kFlagRetrySafe;
  Frames f;
  add_request(f, h, zmq::message_t(std::string("envelope")));
  return f;
}

TEST(Frames, RequestRoundTrips) {
  auto f = request_frames();
  Command c{};
  ASSERT_FALSE(parse_command(f, 0, c));
  EXPECT_EQ(c, Command::kRequest);
  RequestHeader h;
  ASSERT_FALSE(parse_request(f, 0, h));
  EXPECT_EQ(h.service, "ai-gm");
  EXPECT_EQ(h.deadline_ms, 0x0102030405060708ull);
  EXPECT_EQ(h.flags, kFlagRetrySafe);
  EXPECT_EQ(view(f[kEnvelopeIndex]), "envelope");
}

TEST(Frames, OffsetSkipsRoutingId) {
  Frames f;
  f.emplace_back(std::string("peer"));
  auto rest = request_frames();
  for (auto& m : rest) f.push_back(std::move(m));
  RequestHeader h;
  EXPECT_FALSE(parse_request(f, 1, h));
}

TEST(Frames, BadTagAndUnknownCommandAreRejected) {
  auto f = request_frames();
  f[0] = zmq::message_t(std::string("COURIER/2"));
  Command c{};
  EXPECT_EQ(parse_command(f, 0, c), FrameError::kBadTag);
  f = request_frames();
  f[1] = zmq::message_t(std::string("\x7f"));
  EXPECT_EQ(parse_command(f, 0, c), FrameError::kUnknownCommand);
  f[1] = zmq::message_t(std::string("\x01\x01"));
  EXPECT_EQ(parse_command(f, 0, c), FrameError::kUnknownCommand);
  Frames empty;
  EXPECT_EQ(parse_command(empty, 0, c), FrameError::kTooFewFrames);
}

TEST(Frames, WrongCountsAndFieldSizesAreRejected) {
  RequestHeader h;
  auto f = request_frames();
  // One frame more can only be STAMPS, of its fixed size; two more are too many.
  f.emplace_back(std::string("extra"));
  EXPECT_EQ(parse_request(f, 0, h), FrameError::kBadField);
  f.push_back(stamps_frame(Stamps{}));
  EXPECT_EQ(parse_request(f, 0, h), FrameError::kTooManyFrames);
  f = request_frames();
  f.pop_back();
  EXPECT_EQ(parse_request(f, 0, h), FrameError::kTooFewFrames);
  f = request_frames();
  f[3] = zmq::message_t(std::string("short id"));
  EXPECT_EQ(parse_request(f, 0, h), FrameError::kBadField);
  f = request_frames();
  f[2] = zmq::message_t(std::string("Bad Service!"));
  EXPECT_EQ(parse_request(f, 0, h), FrameError::kBadField);
  f = request_frames();
  f[4] = zmq::message_t(std::string("1234567"));
  EXPECT_EQ(parse_request(f, 0, h), FrameError::kBadField);
}

TEST(Frames, StampsRoundTripOnRequestAndReply) {
  Stamps stamps;
  for (std::size_t i = 0; i < kStampCount; ++i) stamps.us[i] = 0x0102030405060708ull + i;
  RequestHeader sent;
  sent.service = "ai-gm";
  sent.id.fill(0x11);
  sent.stamps = stamps;
  Frames f;
  add_request(f, sent, zmq::message_t(std::string("envelope")));
  ASSERT_EQ(f.size(), kRequestFrames + 1);
  EXPECT_EQ(f[kRequestStampsIndex].size(), kStampsFrameSize);
  RequestHeader h;
  ASSERT_FALSE(parse_request(f, 0, h));
  ASSERT_TRUE(h.stamps.has_value());
  EXPECT_EQ(*h.stamps, stamps);
  EXPECT_EQ(view(f[kEnvelopeIndex]), "envelope");

  // The broker's way: one slot written in place, the others untouched.
  write_stamp(f[kRequestStampsIndex], Stamp::kBrokerIn, 42);
  ASSERT_FALSE(parse_request(f, 0, h));
  EXPECT_EQ((*h.stamps)[Stamp::kBrokerIn], 42u);
  EXPECT_EQ((*h.stamps)[Stamp::kGatewayIn], stamps[Stamp::kGatewayIn]);
  EXPECT_EQ((*h.stamps)[Stamp::kGatewayOut], stamps[Stamp::kGatewayOut]);

  // Without stamps the header says so, even when the struct it fills had some.
  ASSERT_FALSE(parse_request(request_frames(), 0, h));
  EXPECT_FALSE(h.stamps.has_value());

  Frames reply;
  add_reply(reply, sent.id, zmq::message_t(std::string("r")), &stamps);
  CorrelationId id{};
  ASSERT_FALSE(parse_reply(reply, 0, id));
  EXPECT_EQ(id, sent.id);
  ASSERT_TRUE(reply_has_stamps(reply, 0));
  EXPECT_EQ(read_stamps(reply[kReplyStampsIndex]), stamps);
  Frames plain;
  add_reply(plain, sent.id, zmq::message_t(std::string("r")));
  ASSERT_FALSE(parse_reply(plain, 0, id));
  EXPECT_FALSE(reply_has_stamps(plain, 0));
}

TEST(Frames, StampsOfAnotherSizeAreRejected) {
  RequestHeader h;
  auto f = request_frames();
  f.emplace_back(std::string(kStampsFrameSize - 1, '\0'));
  EXPECT_EQ(parse_request(f, 0, h), FrameError::kBadField);
  f.back() = zmq::message_t(std::string(kStampsFrameSize + 1, '\0'));
  EXPECT_EQ(parse_request(f, 0, h), FrameError::kBadField);
  Frames reply;
  CorrelationId id{};
  id.fill(1);
  add_reply(reply, id, zmq::message_t(std::string("r")));
  reply.emplace_back(std::string("x"));
  EXPECT_EQ(parse_reply(reply, 0, id), FrameError::kBadField);
  // write_stamp leaves a frame of another size alone.
  zmq::message_t odd(std::string("short"));
  write_stamp(odd, Stamp::kBrokerIn, 7);
  EXPECT_EQ(view(odd), "short");
}

TEST(Frames, ReadyValidatesCapacity) {
  Frames f;
  add_ready(f, "rule-engine", 64, "w1");
  ReadyHeader r;
  ASSERT_FALSE(parse_ready(f, 0, r));
  EXPECT_EQ(r.capacity, 64u);
  EXPECT_EQ(r.worker_id, "w1");
  Frames zero;
  add_ready(zero, "rule-engine", 0, "w1");
  EXPECT_EQ(parse_ready(zero, 0, r), FrameError::kBadField);
}

RequestEnvelope request_for(std::string method, Headers headers = {}) {
  RequestEnvelope r;
  r.id.fill(0x5a);
  r.service = "rule-engine";
  r.method = std::move(method);
  r.headers = std::move(headers);
  r.deadline_ms = 1'700'000'000'000ull;
  return r;
}

TEST(Frames, RequestHeaderComesFromTheEnvelope) {
  const auto r = request_for("GET");
  const auto h = request_header(r);
  EXPECT_EQ(h.service, "rule-engine");
  EXPECT_EQ(h.id, r.id);
  EXPECT_EQ(h.deadline_ms, r.deadline_ms);
  EXPECT_EQ(h.flags, kFlagRetrySafe);
}

TEST(Frames, RequestHeaderRoundTripsThroughItsFrames) {
  const auto r = request_for("POST", {{"Idempotency-Key", "k1"}});
  Frames f;
  add_request(f, request_header(r), encode(r));
  RequestHeader h;
  ASSERT_FALSE(parse_request(f, 0, h));
  EXPECT_EQ(h.service, "rule-engine");
  EXPECT_EQ(h.id, r.id);
  EXPECT_EQ(h.deadline_ms, r.deadline_ms);
  EXPECT_EQ(h.flags, kFlagRetrySafe);
  RequestEnvelope carried;
  ASSERT_FALSE(decode(view(f[kEnvelopeIndex]), carried));
  EXPECT_EQ(carried, r);
  EXPECT_TRUE(request_mismatch(h, carried).empty());
}

TEST(Frames, RequestFlagsFollowTheRetrySafetyDecision) {
  EXPECT_EQ(request_flags(request_for("GET")), kFlagRetrySafe);
  EXPECT_EQ(request_flags(request_for("DELETE")), kFlagRetrySafe);
  EXPECT_EQ(request_flags(request_for("POST")), 0);
  EXPECT_EQ(request_flags(request_for("PATCH")), 0);
  EXPECT_EQ(request_flags(request_for("POST", {{"idempotency-key", "k"}})), kFlagRetrySafe);
}

TEST(Frames, MismatchRefusesRetrySafeFlagOnPostWithoutKey) {
  const auto post = request_for("POST");
  auto h = request_header(post);
  EXPECT_TRUE(request_mismatch(h, post).empty());
  h.flags = kFlagRetrySafe;  // a hostile or buggy sender claims what the request does not back
  EXPECT_FALSE(request_mismatch(h, post).empty());
  h.flags = 0xff;
  EXPECT_FALSE(request_mismatch(h, post).empty());
}

TEST(Frames, MismatchAcceptsMissingFlagAndReservedBits) {
  const auto get = request_for("GET");
  auto h = request_header(get);
  h.flags = 0;  // the broker only requeued less than it might have: no harm
  EXPECT_TRUE(request_mismatch(h, get).empty());
  h.flags = 0xfe;  // reserved bits, ignored
  EXPECT_TRUE(request_mismatch(h, request_for("POST")).empty());
}

TEST(Frames, MismatchRefusesAnotherId) {
  const auto get = request_for("GET");
  auto h = request_header(get);
  h.id[0] ^= 1;
  EXPECT_FALSE(request_mismatch(h, get).empty());
}

TEST(Frames, ServiceNames) {
  EXPECT_TRUE(valid_service_name("rule-engine"));
  EXPECT_TRUE(valid_service_name("ai-gm2"));
  EXPECT_FALSE(valid_service_name(""));
  EXPECT_FALSE(valid_service_name("-x"));
  EXPECT_FALSE(valid_service_name("Upper"));
  EXPECT_FALSE(valid_service_name("a/b"));
  EXPECT_FALSE(valid_service_name(std::string(65, 'a')));
}

TEST(Frames, StreamRoundTripsEveryPart) {
  for (auto part : {StreamPart::kHead, StreamPart::kData, StreamPart::kEnd, StreamPart::kAbort}) {
    StreamHeader h;
    h.id.fill(0x5a);
    h.part = part;
    h.until_ms = 0x0a0b0c0d0e0f1011ull;
    Frames f;
    add_stream(f, h, zmq::message_t(std::string("payload")));
    Command c{};
    ASSERT_FALSE(parse_command(f, 0, c));
    EXPECT_EQ(c, Command::kStream);
    StreamHeader back;
    ASSERT_FALSE(parse_stream(f, 0, back));
    EXPECT_EQ(back.id, h.id);
    EXPECT_EQ(back.part, part);
    EXPECT_EQ(back.until_ms, h.until_ms);
    EXPECT_EQ(view(f[kStreamPayloadIndex]), "payload");
  }
}

TEST(Frames, StreamRefusesUnknownPartsSizesAndLongAbortReasons) {
  StreamHeader h;
  h.part = StreamPart::kData;
  Frames f;
  add_stream(f, h, zmq::message_t(std::string(100'000, 'x')));  // DATA may be any size
  StreamHeader out;
  EXPECT_FALSE(parse_stream(f, 0, out));
  for (std::uint8_t bad : {0, 5, 255}) {
    f[3] = zmq::message_t(&bad, 1);
    EXPECT_EQ(parse_stream(f, 0, out), FrameError::kBadField) << int(bad);
  }
  h.part = StreamPart::kAbort;
  Frames abort;
  add_stream(abort, h, zmq::message_t(std::string(kMaxAbortReason + 1, 'x')));
  EXPECT_EQ(parse_stream(abort, 0, out), FrameError::kBadField);
  Frames short_id;
  add_stream(short_id, h, zmq::message_t(std::string("why")));
  short_id[2] = zmq::message_t(std::string("short"));
  EXPECT_EQ(parse_stream(short_id, 0, out), FrameError::kBadField);
  short_id.pop_back();
  EXPECT_EQ(parse_stream(short_id, 0, out), FrameError::kTooFewFrames);
}

TEST(Frames, CreditAndCancelRoundTripAndBounds) {
  CorrelationId id{};
  id.fill(7);
  Frames credit;
  add_credit(credit, id, 4096);
  CorrelationId got{};
  std::uint32_t bytes = 0;
  ASSERT_FALSE(parse_credit(credit, 0, got, bytes));
  EXPECT_EQ(got, id);
  EXPECT_EQ(bytes, 4096u);
  for (std::uint32_t bad : {0u, kMaxCredit + 1}) {
    Frames f;
    add_credit(f, id, bad);
    EXPECT_EQ(parse_credit(f, 0, got, bytes), FrameError::kBadField) << bad;
  }
  Frames cancel;
  add_cancel(cancel, id);
  Command c{};
  ASSERT_FALSE(parse_command(cancel, 0, c));
  EXPECT_EQ(c, Command::kCancel);
  got = {};
  ASSERT_FALSE(parse_cancel(cancel, 0, got));
  EXPECT_EQ(got, id);
  cancel.emplace_back(std::string("extra"));
  EXPECT_EQ(parse_cancel(cancel, 0, got), FrameError::kTooManyFrames);
}

}  // namespace
}  // namespace courier::protocol
