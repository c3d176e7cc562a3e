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

}  // namespace
}  // namespace courier
