// The STATS reply on its own, as the gateway reads it on the wire: every key the gateway and the
// docs name, per broker and per service, and worker statuses (untrusted) summarised once decoded.
#include "broker/stats_snapshot.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>

namespace courier::broker {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

std::set<std::string> keys_of(const json& j) {
  std::set<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.insert(k);
  return keys;
}

class StatsSnapshotTest : public ::testing::Test {
 protected:
  json render() {
    return json::parse(encode(stats_snapshot("b1", 2, queues_, workers_, requests_, counters_)));
  }

  Clock::time_point now_ = Clock::time_point{} + 1h;
  ServiceQueues queues_{{.default_max_queue = 8, .max_queue = {}, .no_worker_grace = 1s}};
  WorkerRegistry workers_{1s};
  InFlightTable requests_{3};
  Counters counters_;
};

TEST_F(StatsSnapshotTest, TopLevelAndCounterKeysAreThoseTheGatewayReads) {
  counters_.requests = 5;
  counters_.worker_lost_replies = 2;
  const auto stats = render();
  EXPECT_EQ(keys_of(stats),
            (std::set<std::string>{"broker_id", "gateways", "services", "counters"}));
  EXPECT_EQ(stats["broker_id"], "b1");
  EXPECT_EQ(stats["gateways"], 2);
  EXPECT_TRUE(stats["services"].is_object());
  EXPECT_EQ(keys_of(stats["counters"]), (std::set<std::string>{"requests",
                                                               "dispatched",
                                                               "replies",
                                                               "requeued",
                                                               "worker_lost",
                                                               "expired",
                                                               "rejected_overloaded",
                                                               "rejected_no_workers",
                                                               "malformed",
                                                               "late_replies",
                                                               "duplicate_requests",
                                                               "rerouted_requests",
                                                               "unroutable",
                                                               "gateway_gone_drops",
                                                               "orphans",
                                                               "stall_drops",
                                                               "workers_lost",
                                                               "streams",
                                                               "stream_aborts",
                                                               "cancelled_queued",
                                                               "cancelled_in_flight",
                                                               "foreign_cancels",
                                                               "malformed_shape",
                                                               "malformed_field",
                                                               "malformed_misrouted",
                                                               "malformed_status",
                                                               "handler_errors",
                                                               "refused_services",
                                                               "refused_workers",
                                                               "refused_gateways",
                                                               "foreign_ids",
                                                               "peers_disconnected",
                                                               "curve_denied_gateways",
                                                               "curve_denied_workers",
                                                               "loop_wakeups"}));
  EXPECT_EQ(stats["counters"]["requests"], 5);
  EXPECT_EQ(stats["counters"]["worker_lost"], 2);
}

TEST_F(StatsSnapshotTest, AServiceShowsItsLiveWorkersCreditQueueAndOwnCounters) {
  ServiceQueue& echo = queues_.get("echo", now_);
  echo.counters.dispatched = 3;
  Worker& w1 = workers_.add("w1", "echo", "w1-name", 4, now_);
  Worker& w2 = workers_.add("w2", "echo", "w2-name", 6, now_);
  w1.in_flight = 1;
  w2.in_flight = 2;
  w2.draining = true;
  protocol::CorrelationId id{};
  Request waiting;
  waiting.service = "echo";
  requests_.insert(key_of(id), std::move(waiting));
  echo.keys = {key_of(id), "stale"};

  const auto svc = render()["services"]["echo"];
  EXPECT_EQ(keys_of(svc),
            (std::set<std::string>{"workers", "capacity", "in_flight", "queue_depth", "max_queue",
                                   "circuit", "circuits", "ejected", "worker_list", "counters"}));
  EXPECT_EQ(svc["workers"], 1) << "a draining worker is not counted";
  EXPECT_EQ(svc["capacity"], 4);
  EXPECT_EQ(svc["in_flight"], 3) << "a draining worker's requests are";
  EXPECT_EQ(svc["queue_depth"], 1);
  EXPECT_EQ(svc["max_queue"], 8);
  EXPECT_EQ(svc["circuit"], "unknown");
  EXPECT_EQ(svc["ejected"], 0);
  ASSERT_EQ(svc["worker_list"].size(), 2u);
  EXPECT_EQ(svc["worker_list"][1], (json{{"id", "w2-name"},
                                         {"capacity", 6},
                                         {"in_flight", 2},
                                         {"draining", true},
                                         {"completed", 0}}));
  EXPECT_EQ(
      keys_of(svc["counters"]),
      (std::set<std::string>{"dispatched", "replies", "requeued", "worker_lost", "expired",
                             "rejected_overloaded", "rejected_no_workers", "stall_drops", "streams",
                             "stream_aborts", "cancelled_queued", "cancelled_in_flight"}));
  EXPECT_EQ(svc["counters"]["dispatched"], 3);
}

TEST_F(StatsSnapshotTest, WorkerListIsBoundedWhileTotalsCountEveryWorker) {
  // STATS with 20k registered workers once rendered megabytes per answer and stalled the broker.
  for (int s = 0; s < 6; ++s) {
    const std::string service = "svc" + std::to_string(s);
    queues_.get(service, now_);
    for (int i = 0; i < 300; ++i) {
      const auto id = service + "-w" + std::to_string(i);
      workers_.add(id, service, id, 2, now_);
    }
  }
  const auto stats = render();
  std::size_t listed = 0;
  for (const auto& [name, svc] : stats["services"].items()) {
    EXPECT_EQ(svc["workers"], 300) << name;
    EXPECT_EQ(svc["capacity"], 600) << name;
    EXPECT_LE(svc["worker_list"].size(), kMaxListedWorkersPerService) << name;
    listed += svc["worker_list"].size();
  }
  EXPECT_EQ(listed, kMaxListedWorkers);
}

TEST_F(StatsSnapshotTest, CircuitsAgreeingOrNotAreSummarisedAndBadStatusesLeftOut) {
  queues_.get("echo", now_);
  Worker& w1 = workers_.add("w1", "echo", "w1", 4, now_);
  Worker& w2 = workers_.add("w2", "echo", "w2", 4, now_);
  Worker& w3 = workers_.add("w3", "echo", "w3", 4, now_);
  workers_.set_status(w1, R"({"circuit":"closed"})");
  workers_.set_status(w2, R"({"circuit":"closed","attempts":7})");
  workers_.set_status(w3, "{not json");
  auto svc = render()["services"]["echo"];
  EXPECT_EQ(svc["circuit"], "closed");
  EXPECT_EQ(svc["circuits"], (json{{"closed", 2}}));
  EXPECT_EQ(svc["worker_list"][1]["status"]["attempts"], 7);
  EXPECT_FALSE(svc["worker_list"][2].contains("status"));

  workers_.set_status(w3, R"({"circuit":"open"})");
  svc = render()["services"]["echo"];
  EXPECT_EQ(svc["circuit"], "mixed");
  EXPECT_EQ(svc["circuits"], (json{{"closed", 2}, {"open", 1}}));
  EXPECT_EQ(svc["ejected"], 1);

  workers_.set_status(w3, R"({"circuit":7})");
  svc = render()["services"]["echo"];
  EXPECT_EQ(svc["circuit"], "closed") << "a field of the wrong type is ignored";
  EXPECT_FALSE(svc["worker_list"][2]["status"].contains("circuit"))
      << "the status was decoded on arrival: the wrong-typed field took its default";
}

}  // namespace
}  // namespace courier::broker
