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

TEST(HttpHeaders, RetrySafety) {
  EXPECT_TRUE(is_retry_safe("GET", {}));
  EXPECT_TRUE(is_retry_safe("PUT", {}));
  EXPECT_FALSE(is_retry_safe("POST", {}));
  EXPECT_FALSE(is_retry_safe("PATCH", {}));
  EXPECT_TRUE(is_retry_safe("POST", {{"idempotency-key", "k"}}));
}

}  // namespace
}  // namespace courier
