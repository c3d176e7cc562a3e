// The ServiceQueues on their own: the bound of each queue and of the service table, and how long a
// request may wait (its deadline, the no-worker grace), on a clock moved by hand.
#include "broker/service_queues.hpp"

#include <gtest/gtest.h>

#include <string>

namespace courier::broker {
namespace {

using namespace std::chrono_literals;

Worker worker(const Identity& id, std::uint32_t capacity) {
  Worker w;
  w.id = id;
  w.capacity = capacity;
  return w;
}
using Fate = ServiceQueues::Fate;

class ServiceQueuesTest : public ::testing::Test {
 protected:
  std::string add(int n, Clock::duration deadline_in = 5s) {
    protocol::CorrelationId id{};
    id[15] = static_cast<std::uint8_t>(n);
    Request request;
    request.id = id;
    request.service = "echo";
    request.deadline = now_ + deadline_in;
    request.enqueued = now_;
    table_.insert(key_of(id), std::move(request));
    return key_of(id);
  }
  std::string key(int n) const {
    protocol::CorrelationId id{};
    id[15] = static_cast<std::uint8_t>(n);
    return key_of(id);
  }

  Clock::time_point now_ = Clock::time_point{} + 1h;
  ServiceQueues queues_{
      {.default_max_queue = 2, .max_queue = {{"big", 100}}, .no_worker_grace = 1'000ms}};
  InFlightTable table_{3};
  Worker worker_ = worker("w1", 4);
};

TEST_F(ServiceQueuesTest, AQueueIsBoundByItsServicesSettingOrTheDefault) {
  EXPECT_EQ(queues_.get("big", now_).max_queue, 100u);
  ServiceQueue& echo = queues_.get("echo", now_);
  EXPECT_EQ(echo.max_queue, 2u);
  EXPECT_EQ(&queues_.get("echo", now_), &echo) << "created once";
  echo.keys = {add(1)};
  EXPECT_FALSE(echo.full());
  echo.keys.push_back(add(2));
  EXPECT_TRUE(echo.full());
}

TEST_F(ServiceQueuesTest, OnceTheTableIsFullOnlyKnownServicesAreAdmitted) {
  for (std::size_t i = 0; i < ServiceQueues::kMaxServices; ++i) {
    ASSERT_TRUE(queues_.admits("svc-" + std::to_string(i)));
    queues_.get("svc-" + std::to_string(i), now_);
  }
  EXPECT_FALSE(queues_.admits("one-more"));
  EXPECT_TRUE(queues_.admits("svc-7"));
}

TEST_F(ServiceQueuesTest, ARequestExpiresAtItsDeadline) {
  const ServiceQueue& echo = queues_.get("echo", now_);
  const Request& request = *table_.find(add(1, 2s));
  now_ += 2s - 1ms;
  EXPECT_EQ(queues_.fate(echo, request, true, now_), Fate::kWaits);
  now_ += 1ms;
  EXPECT_EQ(queues_.fate(echo, request, true, now_), Fate::kExpired);
}

TEST_F(ServiceQueuesTest, WithoutALiveWorkerARequestWaitsOnlyTheGrace) {
  const ServiceQueue& echo = queues_.get("echo", now_);
  const Request& request = *table_.find(add(1));
  now_ += 999ms;
  EXPECT_EQ(queues_.fate(echo, request, false, now_), Fate::kWaits);
  now_ += 1ms;
  EXPECT_EQ(queues_.fate(echo, request, false, now_), Fate::kNoWorkers);
  EXPECT_EQ(queues_.fate(echo, request, true, now_), Fate::kWaits) << "a live worker will take it";
}

TEST_F(ServiceQueuesTest, TheGraceCountsFromWhenTheLastWorkerLeftIfThatIsLater) {
  ServiceQueue& echo = queues_.get("echo", now_);
  const Request& request = *table_.find(add(1));
  now_ += 800ms;
  echo.no_workers_since = now_;  // a worker that was serving has just died
  now_ += 999ms;
  EXPECT_EQ(queues_.fate(echo, request, false, now_), Fate::kWaits);
  now_ += 1ms;
  EXPECT_EQ(queues_.fate(echo, request, false, now_), Fate::kNoWorkers);
}

TEST_F(ServiceQueuesTest, RequeuedRequestsGoAheadOfNewerOnesInTheirOrder) {
  ServiceQueue& echo = queues_.get("big", now_);
  echo.keys = {add(3), add(4)};
  ServiceQueues::requeue_front(echo, {add(1), add(2)});
  EXPECT_EQ(echo.keys, (std::deque<std::string>{key(1), key(2), key(3), key(4)}));
}

TEST_F(ServiceQueuesTest, KeysOfAnsweredOrDispatchedRequestsAreStale) {
  ServiceQueue& echo = queues_.get("big", now_);
  echo.keys = {add(1), add(2), add(3)};
  table_.erase(key(1));
  table_.dispatched(*table_.find(key(2)), worker_);
  EXPECT_EQ(ServiceQueues::depth(echo, table_), 1u);
  EXPECT_EQ(echo.keys.size(), 3u);
  ServiceQueues::drop_stale(echo, table_);
  EXPECT_EQ(echo.keys, std::deque<std::string>{key(3)});
}

TEST_F(ServiceQueuesTest, TakeAllHandsOverOnlyWaitingRequestsOldestFirst) {
  ServiceQueue& echo = queues_.get("big", now_);
  echo.keys = {add(1), add(2), add(3)};
  table_.dispatched(*table_.find(key(2)), worker_);
  const auto taken = ServiceQueues::take_all(echo, table_);
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_EQ(key_of(taken[0].id), key(1));
  EXPECT_EQ(key_of(taken[1].id), key(3));
  EXPECT_TRUE(echo.keys.empty());
  EXPECT_EQ(table_.size(), 1u) << "the dispatched one stays with its worker";
}

}  // namespace
}  // namespace courier::broker
