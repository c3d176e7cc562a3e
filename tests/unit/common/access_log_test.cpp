#include "common/access_log.hpp"

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "common/config.hpp"

namespace courier::access {
namespace {

using namespace std::chrono_literals;

Record hostile_record() {
  Record r;
  r.time = std::chrono::system_clock::time_point(1'764'686'496'123ms);
  r.component = "gateway";
  r.request_id = "rid-1";
  r.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  r.client = "127.0.0.1";
  r.service = "rule-engine";
  r.method = "GET";
  r.path = std::string("/rule-engine/a\" status=200 x=\"\n\xff\x00\\b", 35);
  r.status = 502;
  r.code = "RULE_ENGINE_BAD_RESPONSE";
  r.attempts = 2;
  r.duration_ms = 12.3456;
  r.upstream_ms = 10.5;
  r.worker = "w1";
  r.bytes_in = 3;
  r.bytes_out = 45;
  r.user_agent = "curl/7.88 \xc3\x28";
  return r;
}

// Splits "access k=v k=\"v v\" ..." the way a log tool would: a quoted value ends at the first
// unescaped '"'.
std::vector<std::pair<std::string, std::string>> parse_text(const std::string& line) {
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t i = line.find(' ');
  while (i != std::string::npos && i < line.size()) {
    ++i;
    const auto eq = line.find('=', i);
    if (eq == std::string::npos) break;
    std::string key = line.substr(i, eq - i);
    std::string value;
    i = eq + 1;
    if (i < line.size() && line[i] == '"') {
      for (++i; i < line.size() && line[i] != '"'; ++i) {
        if (line[i] == '\\') ++i;
        value += line[i];
      }
      ++i;  // the closing quote
    } else {
      const auto sp = line.find(' ', i);
      value = line.substr(i, sp - i);
      i = sp;
    }
    out.emplace_back(std::move(key), std::move(value));
    if (i >= line.size()) break;
    if (line[i] != ' ') {
      ADD_FAILURE() << "garbage after a value at " << i << ": " << line;
      break;
    }
  }
  return out;
}

TEST(AccessLog, JsonLineIsValidJsonWhateverBytesThePathHolds) {
  const auto line = render_json(hostile_record());
  ASSERT_EQ(line.find('\n'), std::string::npos) << "one record, one line";
  const auto j = nlohmann::json::parse(line);  // throws on invalid JSON (or invalid UTF-8)
  EXPECT_EQ(j["time"], "2025-12-02T14:41:36.123Z");
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["component"], "gateway");
  EXPECT_EQ(j["event"], "access");
  EXPECT_EQ(j["status"], 502);
  EXPECT_EQ(j["service"], "rule-engine");
  EXPECT_EQ(j["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(j["code"], "RULE_ENGINE_BAD_RESPONSE");
  EXPECT_EQ(j["attempts"], 2);
  EXPECT_DOUBLE_EQ(j["duration_ms"].get<double>(), 12.346);
  EXPECT_DOUBLE_EQ(j["upstream_ms"].get<double>(), 10.5);
  EXPECT_EQ(j["bytes_out"], 45);
  // The path's bytes are all there (0xFF replaced), quote, newline and NUL escaped by JSON.
  const auto path = j["path"].get<std::string>();
  EXPECT_EQ(path.substr(0, 26), "/rule-engine/a\" status=200");
  EXPECT_NE(path.find("\n\xef\xbf\xbd"), std::string::npos) << "0xFF as U+FFFD";
  EXPECT_NE(path.find(std::string("\0\\b", 3)), std::string::npos);
  EXPECT_FALSE(j.contains("stream")) << "not a stream";
}

TEST(AccessLog, JsonLeavesOutUpstreamTimeWhenUnknownAndGatewayFieldsAtTheWorker) {
  auto r = hostile_record();
  r.upstream_ms.reset();
  r.component = "worker";
  const auto j = nlohmann::json::parse(render_json(r));
  EXPECT_FALSE(j.contains("upstream_ms"));
  EXPECT_FALSE(j.contains("client"));
  EXPECT_FALSE(j.contains("user_agent"));
  EXPECT_EQ(j["worker"], "w1");
}

TEST(AccessLog, TextLineHasExactlyTheFieldsAndAUrlCannotPlantOne) {
  const auto line = render_text(hostile_record());
  ASSERT_EQ(line.find('\n'), std::string::npos) << line;
  ASSERT_EQ(line.find('\0'), std::string::npos) << "a NUL is escaped";
  ASSERT_EQ(line.rfind("access ", 0), 0u) << line;
  const auto fields = parse_text(line);
  std::vector<std::string> keys;
  std::map<std::string, std::string> by_key;
  for (const auto& [k, v] : fields) {
    keys.push_back(k);
    by_key[k] = v;
  }
  const std::vector<std::string> expected = {
      "request_id", "trace_id", "client",    "service",     "method",      "path",
      "status",     "code",     "attempts",  "duration_ms", "upstream_ms", "worker",
      "subject",    "bytes_in", "bytes_out", "user_agent"};
  EXPECT_EQ(keys, expected) << line;
  EXPECT_EQ(by_key["status"], "502") << "the planted status=200 stays inside path";
  EXPECT_EQ(by_key["duration_ms"], "12.3");
  EXPECT_EQ(by_key["subject"], "-");
  EXPECT_NE(line.find(R"(path="/rule-engine/a\" status=200 x=\"\n\xff\x00\\b")"), std::string::npos)
      << line;
  EXPECT_NE(line.find(R"(user_agent="curl/7.88 \xc3(")"), std::string::npos) << line;
}

TEST(AccessLog, TextAddsStreamOutcomeAndReason) {
  auto r = hostile_record();
  r.path = "/s";
  r.stream = "truncated";
  r.reason = "idle timeout";
  const auto line = render_text(r);
  EXPECT_NE(line.find(" stream=truncated reason=\"idle timeout\""), std::string::npos) << line;
}

TEST(AccessLog, QueryValuesAreDroppedAndKeysKept) {
  EXPECT_EQ(loggable_path("/p?user_id=7&page=2", false), "/p?user_id=&page=");
  EXPECT_EQ(loggable_path("/p?token=SECRET123", false), "/p?token=");
  EXPECT_EQ(loggable_path("/p?flag&a=b=c", false), "/p?flag&a=");
  EXPECT_EQ(loggable_path("/p?", false), "/p?");
  EXPECT_EQ(loggable_path("/p", false), "/p");
  EXPECT_EQ(loggable_path("/p?token=SECRET123", true), "/p?token=SECRET123");
}

TEST(AccessLog, SkipListIsParsedAndMatchedOnThePathAlone) {
  EXPECT_EQ(parse_skip_list("x", " /healthz, ,/metrics "),
            (std::vector<std::string>{"/healthz", "/metrics"}));
  EXPECT_TRUE(parse_skip_list("x", "").empty());
  EXPECT_THROW(parse_skip_list("x", "/ok,healthz"), ConfigError);
}

TEST(AccessLog, Iso8601IsUtcWithMilliseconds) {
  EXPECT_EQ(iso8601(std::chrono::system_clock::time_point(0ms)), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(iso8601(std::chrono::system_clock::time_point(1'000'000'000'007ms)),
            "2001-09-09T01:46:40.007Z");
}

}  // namespace
}  // namespace courier::access
