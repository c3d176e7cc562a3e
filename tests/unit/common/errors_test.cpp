#include "common/errors.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace courier {
namespace {

TEST(Errors, PerServiceCodesUseTheUpperCasedServiceName) {
  EXPECT_EQ(error_code(ErrorKind::kUnavailable, "rule-engine"), "RULE_ENGINE_UNAVAILABLE");
  EXPECT_EQ(error_code(ErrorKind::kTimeout, "ai-gm"), "AI_GM_TIMEOUT");
  EXPECT_EQ(error_code(ErrorKind::kOverloaded, "ai-gm"), "AI_GM_OVERLOADED");
  EXPECT_EQ(error_code(ErrorKind::kBadResponse, "ai-gm"), "AI_GM_BAD_RESPONSE");
  EXPECT_EQ(error_code(ErrorKind::kWorkerLost, "ai-gm"), "WORKER_LOST");
  EXPECT_EQ(error_code(ErrorKind::kBrokerUnavailable, "ai-gm"), "BROKER_UNAVAILABLE");
}

TEST(Errors, StatusesMatchTheCatalogue) {
  EXPECT_EQ(error_status(ErrorKind::kBadRequest), 400);
  EXPECT_EQ(error_status(ErrorKind::kUnauthorized), 401);
  EXPECT_EQ(error_status(ErrorKind::kUnknownService), 404);
  EXPECT_EQ(error_status(ErrorKind::kPayloadTooLarge), 413);
  EXPECT_EQ(error_status(ErrorKind::kHeadersTooLarge), 431);
  EXPECT_EQ(error_status(ErrorKind::kWorkerLost), 502);
  EXPECT_EQ(error_status(ErrorKind::kOverloaded), 503);
  EXPECT_EQ(error_status(ErrorKind::kTimeout), 504);
}

TEST(Errors, JsonHasExactlyTheFourFieldsStatusFirst) {
  const auto text = error_json("X", "msg", "det\"ail\xff");
  EXPECT_EQ(text.rfind("{\"status\":\"error\",\"code\":\"X\"", 0), 0u) << text;
  const auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j.size(), 4u);
  EXPECT_EQ(j["message"], "msg");
}

TEST(Errors, ReplyCarriesStatusBodyAndError) {
  const auto r = make_error_reply(ErrorKind::kUnavailable, "rule-engine", "no workers");
  EXPECT_EQ(r.status, 503);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->code, "RULE_ENGINE_UNAVAILABLE");
  EXPECT_EQ(r.error->detail, "no workers");
  EXPECT_EQ(nlohmann::json::parse(r.body)["code"], "RULE_ENGINE_UNAVAILABLE");
}

}  // namespace
}  // namespace courier
