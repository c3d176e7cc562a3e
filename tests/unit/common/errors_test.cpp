#include "common/errors.hpp"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <set>

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

// Every kind of the catalogue: error_code answers INTERNAL_ERROR past the last one.
std::vector<ErrorKind> all_kinds() {
  std::vector<ErrorKind> kinds;
  for (int i = 0; i < 1000; ++i) {
    const auto kind = static_cast<ErrorKind>(i);
    if (error_code(kind, "svc") == "INTERNAL_ERROR") break;
    kinds.push_back(kind);
  }
  return kinds;
}

std::set<std::string> enum_of(const YAML::Node& schema) {
  std::set<std::string> out;
  for (const auto& v : schema["enum"]) out.insert(v.as<std::string>());
  return out;
}

// A "$ref": "#/a/b" inside the document, followed.
YAML::Node follow(const YAML::Node& doc, YAML::Node node) {
  while (node["$ref"]) {
    const auto ref = node["$ref"].as<std::string>();
    EXPECT_EQ(ref.rfind("#/", 0), 0u) << ref;
    YAML::Node at = doc;
    std::size_t begin = 2;
    while (begin <= ref.size()) {
      const auto end = std::min(ref.find('/', begin), ref.size());
      at.reset(at[ref.substr(begin, end - begin)]);
      begin = end + 1;
    }
    node.reset(at);
  }
  return node;
}

// docs/openapi.yaml describes the catalogue: its code enums are exactly the codes the code makes,
// and the proxy route documents each status with the codes that come with it.
TEST(Errors, OpenApiListsEveryCodeOfTheCatalogue) {
  const auto doc = YAML::LoadFile(std::string(COURIER_SOURCE_DIR) + "/docs/openapi.yaml");
  const auto schemas = doc["components"]["schemas"];
  std::set<std::string> fixed, suffixes;
  const auto kinds = all_kinds();
  ASSERT_GE(kinds.size(), 12u);
  for (const auto kind : kinds) {
    const auto a = error_code(kind, "first-service");
    const auto b = error_code(kind, "x");
    if (a == b) {
      fixed.insert(a);
    } else {
      ASSERT_EQ(a.rfind("FIRST_SERVICE_", 0), 0u) << a;
      suffixes.insert(a.substr(std::string("FIRST_SERVICE").size()));
    }
  }
  EXPECT_EQ(enum_of(schemas["FixedErrorCode"]), fixed);
  EXPECT_EQ(enum_of(schemas["ServiceErrorSuffix"]), suffixes);
  const std::regex per_service(schemas["ServiceErrorCode"]["pattern"].as<std::string>());
  for (const auto kind : kinds) {
    for (const auto* service : {"rule-engine", "ai-gm", "x2"}) {
      const auto code = error_code(kind, service);
      if (fixed.count(code)) continue;
      EXPECT_TRUE(std::regex_search(code, per_service)) << code;
    }
  }
  // The proxy route: each status a client can get has a response naming its codes (<SVC> for the
  // service prefix); 499 never reaches a client.
  const auto responses = doc["paths"]["/{service}/{path}"]["get"]["responses"];
  for (const auto kind : kinds) {
    const int status = error_status(kind);
    if (status == 499) continue;
    const auto code =
        fixed.count(error_code(kind, "x")) ? error_code(kind, "x") : "<SVC>" + error_code(kind, "");
    const auto response = follow(doc, responses[std::to_string(status)]);
    ASSERT_TRUE(response.IsMap()) << "no response for " << status;
    const auto description = response["description"].as<std::string>();
    EXPECT_NE(description.find(code), std::string::npos) << status << " does not name " << code;
    const auto schema = follow(doc, response["content"]["application/json"]["schema"]);
    EXPECT_TRUE(schema["properties"]["code"]) << status << ": not the Error schema";
  }
}

}  // namespace
}  // namespace courier
