#include "tests/support/process.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include "tests/support/net.hpp"

namespace courier::testing {
namespace {

TEST(ChildProcess, ReportsTheExitStatus) {
  ChildProcess child("/bin/sh", {"-c", "exit 3"});
  const auto status = child.wait_exit(5s);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 3) << describe_wait_status(*status);
  EXPECT_FALSE(child.running());
}

TEST(ChildProcess, CapturesOutputAndPassesEnvironment) {
  ChildProcess child("/bin/sh", {"-c", "echo out $COURIER_PROBE; echo err >&2"},
                     {{"COURIER_PROBE", "42"}});
  ASSERT_TRUE(child.wait_exit(5s));
  const std::string log = child.log_text();
  EXPECT_NE(log.find("out 42"), std::string::npos) << log;
  EXPECT_NE(log.find("err"), std::string::npos) << log;
}

TEST(ChildProcess, KillStopsAProcessWithSigterm) {
  ChildProcess child("sleep", {"30"});
  EXPECT_TRUE(child.running());
  const auto status = child.kill();
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFSIGNALED(*status));
  EXPECT_EQ(WTERMSIG(*status), SIGTERM);
}

TEST(ChildProcess, KillFallsBackToSigkillWhenSigtermIsIgnored) {
  ChildProcess child("/bin/sh", {"-c", "trap '' TERM; echo ready; exec sleep 30"});
  ASSERT_TRUE(wait_until([&] { return child.log_text().find("ready") != std::string::npos; }, 5s));
  const auto status = child.kill(200ms);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFSIGNALED(*status));
  EXPECT_EQ(WTERMSIG(*status), SIGKILL) << describe_wait_status(*status);
}

TEST(ChildProcess, WaitExitReturnsNulloptAtTheDeadline) {
  ChildProcess child("sleep", {"30"});
  EXPECT_FALSE(child.wait_exit(50ms));
  EXPECT_FALSE(child.signal(SIGTERM));
  EXPECT_TRUE(child.wait_exit(5s));
}

TEST(ChildProcess, SpawnFailureThrows) {
  EXPECT_THROW(ChildProcess("/nonexistent/binary", {}), std::system_error);
}

}  // namespace
}  // namespace courier::testing
