#include "common/trace_context.hpp"

#include <gtest/gtest.h>

namespace courier::trace {
namespace {

constexpr std::string_view kValid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

FreshIds fixed_ids() {
  FreshIds ids;
  for (std::size_t i = 0; i < ids.trace.size(); ++i)
    ids.trace[i] = static_cast<std::uint8_t>(i + 1);
  for (std::size_t i = 0; i < ids.span.size(); ++i)
    ids.span[i] = static_cast<std::uint8_t>(0xa0 + i);
  return ids;
}

TEST(Traceparent, ParsesTheSpecExample) {
  const auto tp = parse_traceparent(kValid);
  ASSERT_TRUE(tp);
  EXPECT_EQ(tp->version, 0);
  EXPECT_EQ(tp->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(tp->parent_id, "00f067aa0ba902b7");
  EXPECT_EQ(tp->flags, 1);
  EXPECT_EQ(format_traceparent(*tp), kValid);
}

TEST(Traceparent, RejectsEachInvalidForm) {
  const std::string v(kValid);
  const auto with = [&](std::size_t pos, std::string_view part) {
    auto s = v;
    s.replace(pos, part.size(), part);
    return s;
  };
  const std::vector<std::string> bad = {
      "",
      v.substr(0, 54),                                           // short
      v + "-",                                                   // version 00 must be exactly 55
      v + "0",                                                   //
      with(0, "ff"),                                             // version ff
      with(0, "0g"),                                             // version not hex
      with(0, "A0"),                                             // uppercase
      with(3, "4BF92F3577B34DA6"),                               // uppercase trace id
      with(3, "00000000000000000000000000000000"),               // zero trace id
      with(36, "0000000000000000"),                              // zero parent id
      with(36, "00F067AA0BA902B7"),                              // uppercase parent id
      with(53, "0x"),                                            // flags not hex
      with(2, "_"),                                              // separators
      with(35, "_"),                                             //
      with(52, "_"),                                             //
      with(10, " "),                                             // a space inside
      "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // 31-digit trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",  // 15-digit parent id
  };
  for (const auto& s : bad) EXPECT_FALSE(parse_traceparent(s)) << '"' << s << '"';
}

TEST(Traceparent, AcceptsALaterVersionWithMoreFields) {
  const auto later = std::string("cc") + std::string(kValid.substr(2)) + "-what-the-future-adds";
  const auto tp = parse_traceparent(later);
  ASSERT_TRUE(tp);
  EXPECT_EQ(tp->version, 0xcc);
  EXPECT_EQ(tp->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_TRUE(parse_traceparent(std::string("01") + std::string(kValid.substr(2))));
  // ... but what follows must be a new field, and it is passed on as version 00.
  EXPECT_FALSE(parse_traceparent(std::string("01") + std::string(kValid.substr(2)) + "x"));
  EXPECT_EQ(format_traceparent(*tp), kValid);
}

TEST(Tracestate, ValidListsPass) {
  EXPECT_TRUE(valid_tracestate("congo=t61rcWkgMzE"));
  EXPECT_TRUE(valid_tracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
  EXPECT_TRUE(valid_tracestate("rojo=1 , ,tenant@vendor=x y"));
  EXPECT_TRUE(valid_tracestate(""));
}

TEST(Tracestate, InvalidListsFail) {
  EXPECT_FALSE(valid_tracestate("Rojo=1"));         // uppercase key
  EXPECT_FALSE(valid_tracestate("rojo"));           // no value
  EXPECT_FALSE(valid_tracestate("rojo="));          // empty value
  EXPECT_FALSE(valid_tracestate("rojo=a=b"));       // '=' in the value
  EXPECT_FALSE(valid_tracestate("rojo=1,rojo=2"));  // key twice
  EXPECT_FALSE(valid_tracestate("rojo=\x01"));      // control byte
  EXPECT_FALSE(valid_tracestate("rojo=\xff"));      // non-ASCII
  EXPECT_FALSE(valid_tracestate("t@=1"));           // empty system id
  std::string many;
  for (int i = 0; i < 33; ++i) many += "k" + std::to_string(i) + "=v,";
  EXPECT_FALSE(valid_tracestate(many));  // 33 members
  std::string long_list;
  for (int i = 0; i < 20; ++i)
    long_list += "k" + std::to_string(i) + "=" + std::string(24, 'v') + ",";
  ASSERT_GT(long_list.size(), kMaxTracestateLength);
  EXPECT_FALSE(valid_tracestate(long_list));  // over 512 characters
}

TEST(NextHop, ContinuesAValidTraceUnderANewSpan) {
  const auto ctx = next_hop({kValid}, {"rojo=1", "congo=2"}, fixed_ids());
  EXPECT_TRUE(ctx.continued);
  EXPECT_EQ(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(ctx.traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-a0a1a2a3a4a5a6a7-01");
  EXPECT_EQ(ctx.tracestate, "rojo=1,congo=2");
}

TEST(NextHop, StartsATraceWhenNoneOrInvalidAndDropsItsTracestate) {
  for (const std::vector<std::string_view>& given :
       {std::vector<std::string_view>{}, std::vector<std::string_view>{"00-zz"},
        std::vector<std::string_view>{kValid, kValid}}) {
    const auto ctx = next_hop(given, {"rojo=1"}, fixed_ids());
    EXPECT_FALSE(ctx.continued);
    EXPECT_EQ(ctx.trace_id, "0102030405060708090a0b0c0d0e0f10");
    EXPECT_EQ(ctx.traceparent, "00-0102030405060708090a0b0c0d0e0f10-a0a1a2a3a4a5a6a7-00");
    EXPECT_EQ(ctx.tracestate, "");
    EXPECT_TRUE(parse_traceparent(ctx.traceparent));
  }
}

TEST(NextHop, DropsAnInvalidTracestateButKeepsTheTrace) {
  const auto ctx = next_hop({kValid}, {"Bad=1"}, fixed_ids());
  EXPECT_TRUE(ctx.continued);
  EXPECT_EQ(ctx.tracestate, "");
}

TEST(FreshIds, RandomIdsMakeValidDistinctTraceparents) {
  const auto a = next_hop({}, {}, FreshIds::random());
  const auto b = next_hop({}, {}, FreshIds::random());
  EXPECT_TRUE(parse_traceparent(a.traceparent));
  EXPECT_NE(a.trace_id, b.trace_id);
  EXPECT_EQ(trace_id_of(a.traceparent), a.trace_id);
  EXPECT_EQ(trace_id_of("garbage"), "");
}

}  // namespace
}  // namespace courier::trace
