// The worker-status and STATS codecs: what one process encodes the other decodes unchanged, and
// hostile text (wrong types, garbage, huge lists, random mutations) decodes to bounded defaults.
#include "common/status.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>

namespace courier {
namespace {

using nlohmann::json;

WorkerStatus sample_status() {
  WorkerStatus s;
  s.circuit = "half-open";
  s.circuit_accepting = false;
  s.circuit_failure_rate = 0.75;
  s.circuit_window_attempts = 12;
  s.circuit_window_failures = 9;
  s.circuit_opened = 2;
  s.circuit_retry_in_ms = 1500;
  s.circuit_failures = 30;
  s.circuit_rejections = 40;
  s.requests = 100;
  s.attempts = 110;
  s.retries = 10;
  s.error_replies = 5;
  s.budget_rejections = 1;
  return s;
}

BrokerStats sample_stats() {
  BrokerStats b;
  b.broker_id = "b1";
  b.gateways = 2;
  b.counters = {{"requests", 10}, {"expired", 1}};
  auto& svc = b.services["echo"];
  svc.workers = 1;
  svc.capacity = 4;
  svc.in_flight = 3;
  svc.queue_depth = 1;
  svc.max_queue = 8;
  svc.circuit = "mixed";
  svc.circuits = {{"closed", 1}, {"open", 1}};
  svc.ejected = 1;
  svc.counters = {{"dispatched", 7}};
  svc.worker_list.push_back({"w1", 4, 1, false, 9, sample_status(), ""});
  svc.worker_list.push_back({"w2", 6, 2, true, 0, std::nullopt, ""});
  b.services["idle"];
  return b;
}

TEST(WorkerStatusCodec, RoundTrips) {
  const auto s = sample_status();
  EXPECT_EQ(decode_worker_status(encode(s)), s);
  EXPECT_EQ(decode_worker_status(encode(WorkerStatus{})), WorkerStatus{});
}

TEST(WorkerStatusCodec, KeysAreThoseInTheProtocolDoc) {
  const auto j = json::parse(encode(sample_status()));
  for (const char* k : {"circuit", "circuit_accepting", "circuit_failure_rate",
                        "circuit_window_attempts", "circuit_window_failures", "circuit_opened",
                        "circuit_retry_in_ms", "circuit_failures", "circuit_rejections", "requests",
                        "attempts", "retries", "error_replies", "budget_rejections"}) {
    EXPECT_TRUE(j.contains(k)) << k;
  }
  EXPECT_EQ(j.size(), 14u);
  EXPECT_FALSE(json::parse(encode(WorkerStatus{})).contains("circuit_accepting"))
      << "unset stays unset, so the broker falls back on the circuit";
}

TEST(WorkerStatusCodec, FieldsOfTheWrongTypeOrOutOfRangeTakeTheirDefaults) {
  const auto s = decode_worker_status(
      R"({"circuit":7,"circuit_accepting":"no","circuit_failure_rate":1.5,"requests":-1,
          "attempts":2.5,"retries":"3","error_replies":null,"circuit_opened":1e300,
          "budget_rejections":18446744073709551615,"unknown":{"deep":[1,2]},"circuit_failures":4})");
  ASSERT_TRUE(s);
  WorkerStatus expected;
  expected.circuit_failures = 4;
  EXPECT_EQ(*s, expected);
  EXPECT_EQ(decode_worker_status(R"({"circuit":")" + std::string(300, 'x') + R"("})")->circuit, "")
      << "an overlong string is out of range";
}

TEST(WorkerStatusCodec, FailsFastFromAcceptingOrElseAnOpenCircuit) {
  const auto fails = [](const char* text) { return decode_worker_status(text)->fails_fast(); };
  EXPECT_TRUE(fails(R"({"circuit":"open"})"));
  EXPECT_TRUE(fails(R"({"circuit":"half-open","circuit_accepting":false})"));
  EXPECT_FALSE(fails(R"({"circuit":"open","circuit_accepting":true})"));
  EXPECT_TRUE(fails(R"({"circuit":"open","circuit_accepting":"no"})"));
  EXPECT_FALSE(fails(R"({"circuit":["open"]})"));
}

TEST(WorkerStatusCodec, NonObjectsGarbageAndOversizedTextGiveNothing) {
  for (const char* text :
       {"", "null", "[]", R"(["open"])", "3", R"("x")", "{not json", "{}}", "\xff\xfe"}) {
    EXPECT_FALSE(decode_worker_status(text)) << text;
  }
  const std::string big = R"({"pad":")" + std::string(kMaxWorkerStatusBytes, 'x') + R"("})";
  EXPECT_FALSE(decode_worker_status(big));
}

TEST(BrokerStatsCodec, RoundTrips) {
  const auto b = sample_stats();
  EXPECT_EQ(decode_broker_stats(encode(b)), b);
  EXPECT_EQ(decode_broker_stats(encode(BrokerStats{})), BrokerStats{});
}

TEST(BrokerStatsCodec, KeysAreThoseTheGatewayReads) {
  const auto j = json::parse(encode(sample_stats()));
  EXPECT_EQ(j.size(), 4u);
  for (const char* k : {"broker_id", "gateways", "services", "counters"})
    EXPECT_TRUE(j.contains(k));
  const auto& svc = j["services"]["echo"];
  EXPECT_EQ(svc.size(), 10u);
  for (const char* k : {"workers", "capacity", "in_flight", "queue_depth", "max_queue", "circuit",
                        "circuits", "ejected", "worker_list", "counters"}) {
    EXPECT_TRUE(svc.contains(k)) << k;
  }
  EXPECT_EQ(
      svc["worker_list"][1],
      (json{
          {"id", "w2"}, {"capacity", 6}, {"in_flight", 2}, {"draining", true}, {"completed", 0}}));
  EXPECT_EQ(svc["worker_list"][0]["status"]["circuit"], "half-open");
}

TEST(BrokerStatsCodec, FieldsOfTheWrongTypeTakeTheirDefaults) {
  const auto b = decode_broker_stats(R"({"broker_id":5,"gateways":"2","counters":[1],
    "services":{"bad":3,"svc":{"workers":-2,"capacity":"4","circuit":1,"circuits":{"open":"x"},
      "counters":{"dispatched":7,"odd":-1,"half":0.5},
      "worker_list":[{"id":7,"draining":"no","status":{"circuit":[1]}},{"id":"w","status":"open"},
                     5, "w3"]}}})");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->broker_id, "");
  EXPECT_EQ(b->gateways, 0u);
  EXPECT_TRUE(b->counters.empty());
  ASSERT_EQ(b->services.size(), 1u) << "a service that is not an object is left out";
  const auto& svc = b->services.at("svc");
  EXPECT_EQ(svc.workers, 0u);
  EXPECT_EQ(svc.capacity, 0u);
  EXPECT_EQ(svc.circuit, "unknown");
  EXPECT_TRUE(svc.circuits.empty());
  EXPECT_EQ(svc.counters, (StatsCounts{{"dispatched", 7}}));
  ASSERT_EQ(svc.worker_list.size(), 2u) << "list entries that are not objects are left out";
  EXPECT_EQ(svc.worker_list[0].id, "");
  EXPECT_FALSE(svc.worker_list[0].draining);
  ASSERT_TRUE(svc.worker_list[0].status);
  EXPECT_EQ(svc.worker_list[0].status->circuit, "");
  EXPECT_FALSE(svc.worker_list[1].status) << "a status that is not an object is none";
}

TEST(BrokerStatsCodec, NonObjectsAndGarbageGiveNothing) {
  for (const char* text : {"", "not json", "[]", "[1,2]", "null", "17", R"({"a":)", "{}{}"}) {
    EXPECT_FALSE(decode_broker_stats(text)) << text;
  }
  EXPECT_TRUE(decode_broker_stats(R"({"services":[1,2]})"));
}

// (Not "s" + std::to_string(i): g++ 12 warns falsely on it, -Wrestrict.)
std::string numbered(const char* prefix, std::size_t i) {
  return std::string(prefix).append(std::to_string(i));
}

TEST(BrokerStatsCodec, OversizedListsAreBounded) {
  json services = json::object();
  for (std::size_t i = 0; i < kMaxStatsServices + 10; ++i)
    services[numbered("s", i)] = json::object();
  json workers = json::array();
  for (std::size_t i = 0; i < kMaxStatsWorkers + 10; ++i) workers.push_back({{"id", "w"}});
  json counters = json::object();
  for (std::size_t i = 0; i < kMaxStatsCounters + 10; ++i) counters[numbered("c", i)] = i;
  services["s0"] = {{"worker_list", workers}, {"counters", counters}, {"circuits", counters}};
  const auto b = decode_broker_stats(
      json{{"services", services}, {"counters", counters}, {"broker_id", std::string(1000, 'x')}}
          .dump());
  ASSERT_TRUE(b);
  EXPECT_EQ(b->services.size(), kMaxStatsServices);
  const auto& s0 = b->services.at("s0");
  EXPECT_EQ(s0.worker_list.size(), kMaxStatsWorkers);
  EXPECT_EQ(s0.counters.size(), kMaxStatsCounters);
  EXPECT_EQ(s0.circuits.size(), kMaxStatsCounters);
  EXPECT_EQ(b->counters.size(), kMaxStatsCounters);
  EXPECT_EQ(b->broker_id, "") << "an overlong id is out of range";
  EXPECT_FALSE(decode_broker_stats(std::string(kMaxBrokerStatsBytes + 1, ' ')));
}

// Random byte flips, truncations and splices of valid snapshots: decoding returns, never throws,
// and what it returns encodes again (to text that decodes to the same value).
TEST(StatusCodecs, MutatedTextNeverThrows) {
  const std::string seeds[] = {encode(sample_stats()), encode(sample_status())};
  const char kAlphabet[] = "{}[]\",:0123456789-.eE tfnul\\\xff";
  std::mt19937 rng(12345);
  for (int round = 0; round < 20000; ++round) {
    std::string text = seeds[round % 2];
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits && !text.empty(); ++e) {
      const std::size_t at = rng() % text.size();
      switch (rng() % 4) {
        case 0:
          text[at] = kAlphabet[rng() % (sizeof kAlphabet - 1)];
          break;
        case 1:
          text.erase(at, 1 + rng() % 16);
          break;
        case 2:
          text.insert(at, 1, kAlphabet[rng() % (sizeof kAlphabet - 1)]);
          break;
        default:
          text.resize(at);
          break;
      }
    }
    std::optional<BrokerStats> b;
    std::optional<WorkerStatus> w;
    ASSERT_NO_THROW(b = decode_broker_stats(text)) << text;
    ASSERT_NO_THROW(w = decode_worker_status(text)) << text;
    if (b) {
      EXPECT_EQ(decode_broker_stats(encode(*b)), b) << text;
    }
    if (w) {
      EXPECT_EQ(decode_worker_status(encode(*w)), w) << text;
    }
  }
}

}  // namespace
}  // namespace courier
