// The WorkerRegistry on its own: registration, expiry on a clock moved by hand, the least-loaded
// choice and the ejection of workers whose circuit is open.
#include "broker/worker_registry.hpp"

#include <gtest/gtest.h>

#include <string>

namespace courier::broker {
namespace {

using namespace std::chrono_literals;

class WorkerRegistryTest : public ::testing::Test {
 protected:
  Worker& add(const std::string& id, std::uint32_t capacity, const std::string& service = "echo") {
    return registry_.add(id, service, id + "-name", capacity, now_);
  }

  Clock::time_point now_ = Clock::time_point{} + 1h;
  WorkerRegistry registry_{1s};
};

TEST_F(WorkerRegistryTest, AddedWorkerIsFoundAndListedUnderItsService) {
  Worker& w = add("w1", 4);
  EXPECT_EQ(registry_.find("w1"), &w);
  EXPECT_EQ(w.name, "w1-name");
  EXPECT_EQ(w.capacity, 4u);
  ASSERT_EQ(registry_.of_service("echo").size(), 1u);
  EXPECT_EQ(registry_.of_service("echo")[0], &w);
  EXPECT_TRUE(registry_.of_service("other").empty());
  EXPECT_EQ(registry_.find("w2"), nullptr);
}

TEST_F(WorkerRegistryTest, RemovedWorkerLeavesEveryIndexAndIsHandedBack) {
  add("w1", 4);
  add("w2", 4);
  const auto removed = registry_.remove("w1");
  ASSERT_NE(removed, nullptr);
  EXPECT_EQ(removed->id, "w1");
  EXPECT_EQ(registry_.find("w1"), nullptr);
  ASSERT_EQ(registry_.of_service("echo").size(), 1u);
  EXPECT_EQ(registry_.of_service("echo")[0]->id, "w2");
  EXPECT_EQ(registry_.ids(), std::vector<Identity>{"w2"});
  EXPECT_EQ(registry_.remove("w1"), nullptr);
}

TEST_F(WorkerRegistryTest, SilentWorkerExpiresAndAnythingHeardRenewsIt) {
  Worker& w1 = add("w1", 1);
  add("w2", 1);
  now_ += 600ms;
  registry_.touch(w1, now_);
  now_ += 400ms;
  EXPECT_EQ(registry_.expired(now_), std::vector<Identity>{"w2"});
  now_ += 599ms;
  EXPECT_EQ(registry_.expired(now_).size(), 1u);
  now_ += 1ms;
  EXPECT_EQ(registry_.expired(now_).size(), 2u);
}

TEST_F(WorkerRegistryTest, LeastLoadedIsChosenByShareOfCapacity) {
  Worker& small = add("small", 2);
  Worker& big = add("big", 10);
  small.in_flight = 1;  // half full
  big.in_flight = 4;    // 40 %
  EXPECT_EQ(registry_.least_loaded("echo", false), &big);
  big.in_flight = 5;  // a tie goes to the first registered
  EXPECT_EQ(registry_.least_loaded("echo", false), &small);
}

TEST_F(WorkerRegistryTest, FullOrDrainingWorkersAreNeverChosen) {
  Worker& w1 = add("w1", 1);
  Worker& w2 = add("w2", 3);
  w1.in_flight = 1;
  w2.draining = true;
  EXPECT_EQ(registry_.least_loaded("echo", false), nullptr);
  EXPECT_EQ(registry_.least_loaded("other", false), nullptr);
  w2.draining = false;
  EXPECT_EQ(registry_.least_loaded("echo", false), &w2);
}

TEST_F(WorkerRegistryTest, OnlyADrainingWorkerIsNotALiveOne) {
  EXPECT_FALSE(registry_.has_live_worker("echo"));
  Worker& w1 = add("w1", 1);
  w1.in_flight = 1;
  EXPECT_TRUE(registry_.has_live_worker("echo")) << "a full worker is still live";
  w1.draining = true;
  EXPECT_FALSE(registry_.has_live_worker("echo"));
}

TEST_F(WorkerRegistryTest, OpenCircuitIsEjectedWhileAtLeastHalfOfTheLiveWorkersAreHealthy) {
  Worker& w1 = add("w1", 4);
  Worker& w2 = add("w2", 4);
  EXPECT_TRUE(registry_.set_status(w1, R"({"circuit":"open"})"));
  EXPECT_EQ(registry_.ejected_workers("echo"), 1u);
  EXPECT_EQ(registry_.least_loaded("echo", true), &w2);
  w2.draining = true;  // now the only live worker is the open one: it serves
  EXPECT_EQ(registry_.ejected_workers("echo"), 0u);
}

TEST_F(WorkerRegistryTest, NobodyIsEjectedWhenMostCircuitsAreOpen) {
  Worker& w1 = add("w1", 4);
  Worker& w2 = add("w2", 4);
  add("w3", 4);
  registry_.set_status(w1, R"({"circuit":"open"})");
  registry_.set_status(w2, R"({"circuit_accepting":false})");
  EXPECT_EQ(registry_.ejected_workers("echo"), 0u);
  EXPECT_EQ(registry_.least_loaded("echo", false), &w1);
}

TEST_F(WorkerRegistryTest, StatusReportsOnlyAChangeOfTheCircuit) {
  Worker& w = add("w1", 4);
  EXPECT_FALSE(registry_.set_status(w, R"({"circuit":"closed"})"));
  ASSERT_TRUE(w.status) << "kept decoded";
  EXPECT_EQ(w.status->circuit, "closed");
  EXPECT_TRUE(registry_.set_status(w, R"({"circuit":"open"})"));
  EXPECT_FALSE(registry_.set_status(w, R"({"circuit":"open","attempts":3})"));
  EXPECT_TRUE(registry_.set_status(w, "{not json"));
  EXPECT_FALSE(w.circuit_open);
  EXPECT_FALSE(w.status) << "an unreadable status replaces the last one";
}

// The status text as a heartbeat carries it, decoded the way set_status decodes it.
bool circuit_is_open(const char* status) {
  return courier::broker::circuit_is_open(decode_worker_status(status));
}

TEST(CircuitIsOpen, ReadsOnlyFieldsOfTheRightType) {
  EXPECT_TRUE(circuit_is_open(R"({"circuit":"open"})"));
  EXPECT_TRUE(circuit_is_open(R"({"circuit":"half-open","circuit_accepting":false})"));
  EXPECT_FALSE(circuit_is_open(R"({"circuit":"open","circuit_accepting":true})"))
      << "circuit_accepting wins when present";
  EXPECT_TRUE(circuit_is_open(R"({"circuit":"open","circuit_accepting":"no"})"))
      << "a circuit_accepting that is not a boolean is ignored";
  for (const char* status : {R"({"circuit":1})", R"({"circuit":["open"]})", R"(["open"])",
                             R"("open")", "", "{not json", R"({"circuit":"closed"})"}) {
    EXPECT_FALSE(circuit_is_open(status)) << status;
  }
}

}  // namespace
}  // namespace courier::broker
