// The InFlightTable on its own: replies matched to the worker that holds the request, and what a
// lost worker held settled (requeued or lost) on a clock moved by hand.
#include "broker/in_flight_table.hpp"

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

class InFlightTableTest : public ::testing::Test {
 protected:
  // A request `deadline_in` from now, queued.
  std::string add(int n, std::uint8_t flags = protocol::kFlagRetrySafe,
                  Clock::duration deadline_in = 5s) {
    protocol::CorrelationId id{};
    id[15] = static_cast<std::uint8_t>(n);
    Request request;
    request.id = id;
    request.gateway = "g1";
    request.service = "echo";
    request.flags = flags;
    request.deadline = now_ + deadline_in;
    request.enqueued = now_;
    table_.insert(key_of(id), std::move(request));
    return key_of(id);
  }

  Clock::time_point now_ = Clock::time_point{} + 1h;
  InFlightTable table_{3};
  Worker w1_ = worker("w1", 4);
  Worker w2_ = worker("w2", 4);
};

TEST_F(InFlightTableTest, KeyIsTheCorrelationIdBytes) {
  protocol::CorrelationId id{};
  id[0] = 'a';
  id[15] = 'z';
  const auto key = key_of(id);
  ASSERT_EQ(key.size(), id.size());
  EXPECT_EQ(key.front(), 'a');
  EXPECT_EQ(key.back(), 'z');
}

TEST_F(InFlightTableTest, DispatchAndReplyMoveTheWorkersCredit) {
  const auto key = add(1);
  EXPECT_TRUE(table_.is_queued(key));
  table_.dispatched(*table_.find(key), w1_);
  EXPECT_FALSE(table_.is_queued(key));
  EXPECT_EQ(w1_.in_flight, 1u);
  EXPECT_EQ(table_.in_flight(), 1u);
  const auto done = table_.complete(key, w1_);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->gateway, "g1");
  EXPECT_EQ(done->worker, nullptr);
  EXPECT_EQ(w1_.in_flight, 0u);
  EXPECT_EQ(w1_.completed, 1u);
  EXPECT_EQ(table_.size(), 0u);
}

TEST_F(InFlightTableTest, ReplyFromAWorkerThatDoesNotHoldTheRequestIsNoMatch) {
  const auto key = add(1);
  EXPECT_FALSE(table_.complete(key, w1_)) << "still queued";
  table_.dispatched(*table_.find(key), w1_);
  EXPECT_FALSE(table_.complete(key, w2_));
  EXPECT_FALSE(table_.complete(add(2), w1_));
  EXPECT_EQ(w1_.in_flight, 1u);
  EXPECT_TRUE(table_.complete(key, w1_));
  EXPECT_FALSE(table_.complete(key, w1_)) << "a second reply";
}

TEST_F(InFlightTableTest, LostWorkersRetrySafeRequestsAreQueuedAgainAndTheRestLost) {
  const auto safe = add(1);
  const auto unsafe = add(2, 0);
  const auto elsewhere = add(3);
  for (const auto& key : {safe, unsafe}) table_.dispatched(*table_.find(key), w1_);
  table_.dispatched(*table_.find(elsewhere), w2_);
  const auto loss = table_.release(w1_, now_);
  EXPECT_EQ(loss.requeue, std::vector<std::string>{safe});
  ASSERT_EQ(loss.lost.size(), 1u);
  EXPECT_EQ(key_of(loss.lost[0].id), unsafe);
  EXPECT_TRUE(table_.is_queued(safe));
  EXPECT_EQ(table_.find(unsafe), nullptr);
  EXPECT_EQ(table_.find(elsewhere)->worker, &w2_);
}

TEST_F(InFlightTableTest, ARequestOutOfDispatchesOrTimeIsLostNotRequeued) {
  const auto tired = add(1);
  const auto late = add(2, protocol::kFlagRetrySafe, 1s);
  for (int i = 0; i < 3; ++i) table_.dispatched(*table_.find(tired), w1_);  // max_dispatches
  table_.dispatched(*table_.find(late), w1_);
  now_ += 1s;  // exactly at the deadline
  const auto loss = table_.release(w1_, now_);
  EXPECT_TRUE(loss.requeue.empty());
  EXPECT_EQ(loss.lost.size(), 2u);
  EXPECT_EQ(table_.size(), 0u);
}

TEST_F(InFlightTableTest, RequestsAtAWorkerPastDeadlinePlusGraceAreForgotten) {
  const auto held = add(1, protocol::kFlagRetrySafe, 1s);
  const auto queued = add(2, protocol::kFlagRetrySafe, 1s);
  table_.dispatched(*table_.find(held), w1_);
  now_ += 1s + 30s - 1ms;
  EXPECT_EQ(table_.forget_orphans(now_, 30s).size(), 0u);
  now_ += 1ms;
  const auto forgotten = table_.forget_orphans(now_, 30s);
  ASSERT_EQ(forgotten.size(), 1u);
  EXPECT_EQ(key_of(forgotten[0].id), held);
  EXPECT_EQ(forgotten[0].worker, &w1_) << "so that the broker can tell the worker to stop";
  EXPECT_EQ(w1_.in_flight, 0u) << "its credit is freed";
  EXPECT_EQ(table_.find(held), nullptr);
  EXPECT_NE(table_.find(queued), nullptr) << "queued requests are the queues' business";
}

TEST_F(InFlightTableTest, OnlyTheWorkerHoldingARequestFindsIt) {
  const auto key = add(1);
  EXPECT_EQ(table_.held_by(key, w1_), nullptr) << "still queued";
  table_.dispatched(*table_.find(key), w1_);
  EXPECT_EQ(table_.held_by(key, w1_), table_.find(key));
  EXPECT_EQ(table_.held_by(key, w2_), nullptr);
  EXPECT_EQ(table_.held_by(add(2), w1_), nullptr);
}

TEST_F(InFlightTableTest, ALostWorkersStreamIsAbortedNeverRequeuedEvenIfRetrySafe) {
  const auto streaming = add(1);
  const auto cancelled = add(2);
  const auto plain = add(3);
  for (const auto& key : {streaming, cancelled, plain}) table_.dispatched(*table_.find(key), w1_);
  table_.find(streaming)->streaming = true;
  table_.find(cancelled)->cancelled = true;
  table_.find(cancelled)->streaming = true;  // cancelled wins: nobody waits for its ABORT
  const auto loss = table_.release(w1_, now_);
  EXPECT_EQ(loss.requeue, std::vector<std::string>{plain});
  EXPECT_TRUE(loss.lost.empty());
  ASSERT_EQ(loss.aborted.size(), 1u);
  EXPECT_EQ(key_of(loss.aborted[0].id), streaming);
  EXPECT_EQ(loss.cancelled, 1u);
  EXPECT_EQ(table_.find(streaming), nullptr);
  EXPECT_EQ(table_.find(cancelled), nullptr);
  EXPECT_TRUE(table_.is_queued(plain));
}

TEST_F(InFlightTableTest, AStreamPastItsUntilPlusGraceIsAnOrphan) {
  const auto key = add(1, protocol::kFlagRetrySafe, 1s);
  table_.dispatched(*table_.find(key), w1_);
  table_.find(key)->deadline = now_ + 60s;  // what a STREAM's `until` sets
  now_ += 1s + 30s;
  EXPECT_EQ(table_.forget_orphans(now_, 30s).size(), 0u) << "the head's deadline no longer counts";
  now_ += 59s;
  EXPECT_EQ(table_.forget_orphans(now_, 30s).size(), 1u);
  EXPECT_EQ(w1_.in_flight, 0u);
}

TEST_F(InFlightTableTest, TakeAllEmptiesTheTableAndGivesCreditBack) {
  table_.dispatched(*table_.find(add(1)), w1_);
  add(2);
  EXPECT_EQ(table_.take_all().size(), 2u);
  EXPECT_EQ(table_.size(), 0u);
  EXPECT_EQ(w1_.in_flight, 0u);
}

}  // namespace
}  // namespace courier::broker
