// Several brokers' stats merged into the one view /services, /readyz and /metrics show.
#include "gateway/broker_view.hpp"

#include <gtest/gtest.h>

namespace courier::gateway {
namespace {

// The same two workers registered with both brokers, each giving each broker half its capacity.
const char* kBrokerA = R"({"broker_id":"a","gateways":2,"counters":{"requests":10,"expired":1},
  "services":{"svc":{"workers":2,"capacity":4,"in_flight":1,"queue_depth":0,"max_queue":100,
    "circuit":"closed","ejected":1,"counters":{"dispatched":7},
    "worker_list":[{"id":"w1","capacity":2,"draining":false,"status":{"circuit":"closed"}},
                   {"id":"w2","capacity":2,"draining":false,"status":{"circuit":"open"}}]}}})";
const char* kBrokerB = R"({"broker_id":"b","gateways":1,"counters":{"requests":5},
  "services":{"svc":{"workers":2,"capacity":4,"in_flight":2,"queue_depth":3,"max_queue":100,
    "circuit":"open","ejected":1,"counters":{"dispatched":4},
    "worker_list":[{"id":"w1","capacity":2,"draining":false,"status":{"circuit":"closed"}},
                   {"id":"w2","capacity":2,"draining":true,"status":{"circuit":"open"}}]},
   "other":{"workers":1,"capacity":8,"in_flight":0,"queue_depth":0,"max_queue":10,
    "worker_list":[{"id":"o1","capacity":8,"draining":false}]}}})";

TEST(MergeBrokerStats, AddsUpConnectedBrokersAndCountsEachWorkerOnce) {
  const auto m = merge_broker_stats({{"tcp://a:1", true, 3, parse_stats(kBrokerA)},
                                     {"tcp://b:1", true, 0, parse_stats(kBrokerB)},
                                     {"tcp://c:1", false, 0, nullptr}});
  const auto& svc = m["services"]["svc"];
  EXPECT_EQ(svc["workers"], 2);  // w1 and w2 (live on a), not four
  EXPECT_EQ(svc["capacity"], 8);
  EXPECT_EQ(svc["in_flight"], 3);
  EXPECT_EQ(svc["queue_depth"], 3);
  EXPECT_EQ(svc["max_queue"], 200);
  EXPECT_EQ(svc["circuit"], "mixed");
  EXPECT_EQ(svc["circuits"], nlohmann::json::parse(R"({"closed":1,"open":1})"))
      << "each worker once, though both brokers list it";
  EXPECT_EQ(svc["ejected"], 1);
  EXPECT_EQ(svc["counters"]["dispatched"], 11);
  EXPECT_EQ(svc["worker_list"].size(), 4u);
  EXPECT_EQ(svc["worker_list"][0]["broker"], "a");
  EXPECT_EQ(m["services"]["other"]["workers"], 1);
  EXPECT_EQ(m["counters"]["requests"], 15);
  EXPECT_EQ(m["counters"]["expired"], 1);
  EXPECT_EQ(m["gateways"], 2);
  ASSERT_EQ(m["brokers"].size(), 3u);
  EXPECT_EQ(m["brokers"][0]["id"], "a");
  EXPECT_EQ(m["brokers"][0]["pending"], 3);
  EXPECT_EQ(m["brokers"][2]["connected"], false);
  EXPECT_FALSE(m["brokers"][2].contains("id"));
}

TEST(MergeBrokerStats, DisconnectedOrMalformedSnapshotsAddNothing) {
  const auto m =
      merge_broker_stats({{"tcp://a:1", false, 0, parse_stats(kBrokerA)},
                          {"tcp://b:1", true, 0, parse_stats("not json")},
                          {"tcp://c:1", true, 0, parse_stats(R"({"services":[1,2]})")},
                          {"tcp://d:1", true, 0, parse_stats(R"({"services":{"svc":3}})")}});
  EXPECT_TRUE(m["services"].empty());
  EXPECT_TRUE(m["counters"].empty());
  EXPECT_EQ(m["brokers"].size(), 4u);
}

TEST(MergeBrokerStats, FieldsOfTheWrongTypeAreIgnored) {
  const auto m = merge_broker_stats({{"tcp://a:1", true, 0, parse_stats(R"({"broker_id":"a",
    "services":{"svc":{"circuit":1,"worker_list":[{"id":7,"draining":"no","status":{"circuit":[1]}},
                                                 {"id":"w","status":"open"}]}}})")}});
  const auto& svc = m["services"]["svc"];
  EXPECT_EQ(svc["circuit"], "unknown");
  EXPECT_TRUE(svc["circuits"].empty());
  EXPECT_EQ(svc["workers"], 2);
}

TEST(MergeBrokerStats, TopLevelFieldsOfTheWrongTypeTakeDefaultsInsteadOfThrowing) {
  // Read untyped, `"gateways":"x"` or `"broker_id":5` threw out of /services.
  const auto m = merge_broker_stats({{"tcp://a:1", true, 0, parse_stats(R"({"broker_id":5,
    "gateways":"x","counters":{"requests":"7","expired":2},"services":{"svc":{"workers":1}}})")}});
  EXPECT_EQ(m["brokers"][0]["id"], "");
  EXPECT_EQ(m["brokers"][0]["gateways"], 0);
  EXPECT_EQ(m["gateways"], 0);
  EXPECT_EQ(m["counters"], nlohmann::json::parse(R"({"expired":2})"));
  EXPECT_EQ(m["services"]["svc"]["workers"], 0) << "no worker is listed";
}

TEST(MergeBrokerStats, OneBrokerReadsAsItself) {
  const auto m = merge_broker_stats({{"tcp://a:1", true, 0, parse_stats(kBrokerA)}});
  const auto& svc = m["services"]["svc"];
  EXPECT_EQ(svc["workers"], 2);
  EXPECT_EQ(svc["capacity"], 4);
  EXPECT_EQ(svc["circuit"], "closed");
  EXPECT_EQ(m["counters"]["requests"], 10);
}

}  // namespace
}  // namespace courier::gateway
