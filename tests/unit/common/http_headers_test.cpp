#include "common/http_headers.hpp"

#include <gtest/gtest.h>

namespace courier {
namespace {

TEST(HttpHeaders, HopByHopAndConnectionNamedHeadersAreRemovedOrderKept) {
  const Headers in = {{"A", "1"},
                      {"Connection", "close, X-Secret"},
                      {"X-Secret", "s"},
                      {"Keep-Alive", "t=1"},
                      {"Transfer-Encoding", "chunked"},
                      {"a", "2"},
                      {"Host", "h"},
                      {"Content-Length", "3"}};
  const Headers expected = {{"A", "1"}, {"a", "2"}};
  EXPECT_EQ(end_to_end(in), expected);
}

TEST(HttpHeaders, EveryConnectionHeaderCountsAndLargeListsKeepTheirOrder) {
  Headers in = {{"connection", "X-One"}, {"X-One", "1"}, {"X-Two", "2"}};
  for (int i = 0; i < 1000; ++i) in.push_back({"X-H" + std::to_string(i), std::to_string(i)});
  in.push_back({"Connection", " x-two ,"});
  const auto out = end_to_end(in);
  ASSERT_EQ(out.size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(out[i].value, std::to_string(i));
}

TEST(HttpHeaders, RetrySafety) {
  EXPECT_TRUE(is_retry_safe("GET", {}));
  EXPECT_TRUE(is_retry_safe("PUT", {}));
  EXPECT_FALSE(is_retry_safe("POST", {}));
  EXPECT_FALSE(is_retry_safe("PATCH", {}));
  EXPECT_TRUE(is_retry_safe("POST", {{"idempotency-key", "k"}}));
}

TEST(HttpHeaders, TokensAreRfc9110Tchars) {
  for (const std::string_view ok : {"X-Up", "a", "!#$%&'*+-.^_`|~09AZaz"}) {
    EXPECT_TRUE(is_token(ok)) << ok;
  }
  for (const std::string_view bad :
       {"", "X A", "X:A", "X\r\nA", "X\tA", "(x)", "x/y", "é", "x\"y"}) {
    EXPECT_FALSE(is_token(bad)) << bad;
  }
  EXPECT_FALSE(is_token(std::string_view("a\0b", 3)));
}

TEST(HttpHeaders, FieldValuesRefuseControlsButHtabAndAllowObsText) {
  for (const std::string_view ok : {"", "plain", "a\tb", " spaced ", "caf\xc3\xa9", "\xff\x80"}) {
    EXPECT_TRUE(is_field_value(ok)) << ok;
  }
  for (const std::string_view bad :
       {"a\rb", "a\nb", "b\r\nSet-Cookie: evil", "\x01", "\x1f", "\x7f"}) {
    EXPECT_FALSE(is_field_value(bad)) << bad;
  }
  EXPECT_FALSE(is_field_value(std::string_view("a\0b", 3)));
}

TEST(HttpHeaders, LooselyEqualTakesUnderscoreForDashAndIgnoresCase) {
  EXPECT_TRUE(loosely_equal("X_Courier_Subject", "x-courier-subject"));
  EXPECT_TRUE(loosely_equal("x-courier_subject", "X-Courier-Subject"));
  EXPECT_FALSE(loosely_equal("X-Courier-Subjects", "x-courier-subject"));
  EXPECT_FALSE(loosely_equal("X.Courier.Subject", "x-courier-subject"));
  EXPECT_TRUE(loosely_starts_with("X_COURIER_anything", "x-courier-"));
  EXPECT_FALSE(loosely_starts_with("X-Courie", "x-courier-"));
}

}  // namespace
}  // namespace courier
