#include "tests/support/net.hpp"

#include <gtest/gtest.h>

namespace courier::testing {
namespace {

TEST(Net, ConnectingToAClosedPortFails) {
  const auto port = free_tcp_port();
  EXPECT_NE(port, 0);
  EXPECT_EQ(http_request(port, "GET", "/", {}, {}, 2s).error, ClientError::kConnectFailed);
}

TEST(Net, WaitUntilGivesUpAtTheDeadline) {
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(wait_until([] { return false; }, 50ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 50ms);
  EXPECT_TRUE(wait_until([] { return true; }, 0ms));
}

TEST(Net, FindHeaderIgnoresCase) {
  const HeaderList headers{{"Content-Type", "a"}, {"content-type", "b"}};
  EXPECT_EQ(find_header(headers, "CONTENT-TYPE"), "a");
  EXPECT_FALSE(find_header(headers, "Host"));
}

}  // namespace
}  // namespace courier::testing
