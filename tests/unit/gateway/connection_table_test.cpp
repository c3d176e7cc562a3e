// The gateway's connection accounting: the global cap, the cap per client address, and the
// eviction of the longest-idle connection (never a busy one) when a new one needs a place.
#include "gateway/connection_table.hpp"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace courier::gateway {
namespace {

using Lease = ConnectionTable::Lease;

ConnectionTable::Limits limits(std::size_t total, std::size_t per_client = 0) {
  return {.max_total = total, .max_per_client = per_client};
}

TEST(ConnectionTable, PerClientLimitRefusesOnlyThatAddress) {
  ConnectionTable table(limits(100, 2));
  auto a1 = table.open("10.0.0.1", nullptr);
  auto a2 = table.open("10.0.0.1", nullptr);
  ASSERT_TRUE(a1.lease && a2.lease);
  const auto a3 = table.open("10.0.0.1", nullptr);
  EXPECT_FALSE(a3.lease);
  EXPECT_EQ(a3.refused, ConnectionTable::Refused::kClientLimit);
  EXPECT_TRUE(table.open("10.0.0.2", nullptr).lease);
  EXPECT_EQ(table.count("10.0.0.1"), 2u);
  a1.lease.reset();
  EXPECT_EQ(table.count("10.0.0.1"), 1u);
  EXPECT_TRUE(table.open("10.0.0.1", nullptr).lease) << "a place given back is free again";
}

TEST(ConnectionTable, PerClientLimitZeroMeansNone) {
  ConnectionTable table(limits(100, 0));
  std::vector<Lease> leases;
  for (int i = 0; i < 50; ++i) {
    auto a = table.open("10.0.0.1", nullptr);
    ASSERT_TRUE(a.lease);
    leases.push_back(std::move(*a.lease));
  }
  EXPECT_EQ(table.size(), 50u);
}

TEST(ConnectionTable, AtTheCapWithNoIdleConnectionTheNewOneIsRefused) {
  ConnectionTable table(limits(2));
  auto a = table.open("a", nullptr);
  auto b = table.open("b", nullptr);
  const auto c = table.open("c", nullptr);
  EXPECT_FALSE(c.lease);
  EXPECT_EQ(c.refused, ConnectionTable::Refused::kFull);
  EXPECT_EQ(table.size(), 2u);
}

TEST(ConnectionTable, AtTheCapTheLongestIdleConnectionIsEvictedAndBusyOnesAreKept) {
  ConnectionTable table(limits(3));
  std::vector<std::string> evicted;
  const auto open = [&](const std::string& name) {
    auto a = table.open(name, [&evicted, name] { evicted.push_back(name); });
    EXPECT_TRUE(a.lease) << name;
    return std::move(*a.lease);
  };
  auto busy = open("busy");
  auto idle_first = open("idle-first");
  auto idle_second = open("idle-second");
  idle_first.idle();
  idle_second.idle();

  const auto d = table.open("d", nullptr);
  ASSERT_TRUE(d.lease);
  EXPECT_TRUE(d.evicted_other);
  EXPECT_EQ(evicted, std::vector<std::string>{"idle-first"});
  EXPECT_EQ(table.size(), 3u) << "the evicted one's place went to the new one";
  EXPECT_FALSE(idle_first.busy()) << "an evicted connection learns it when a request begins";
  EXPECT_TRUE(idle_second.busy());
  EXPECT_TRUE(busy.busy());

  // Everything busy now: nothing to evict.
  const auto e = table.open("e", nullptr);
  EXPECT_FALSE(e.lease);
  EXPECT_EQ(evicted.size(), 1u);
}

TEST(ConnectionTable, IdleOrderIsWhenEachWentIdleNotWhenItOpened) {
  ConnectionTable table(limits(2));
  std::vector<std::string> evicted;
  auto a = std::move(*table.open("a", [&] { evicted.push_back("a"); }).lease);
  auto b = std::move(*table.open("b", [&] { evicted.push_back("b"); }).lease);
  a.idle();
  b.idle();
  ASSERT_TRUE(a.busy());  // a request on a, then idle again: a is now the most recent
  a.idle();
  ASSERT_TRUE(table.open("c", nullptr).lease);
  EXPECT_EQ(evicted, std::vector<std::string>{"b"});
}

TEST(ConnectionTable, AnEvictedConnectionClosingLaterGivesNothingBackTwice) {
  ConnectionTable table(limits(1, 2));
  int evictions = 0;
  auto first = table.open("x", [&] { ++evictions; });
  first.lease->idle();
  // Same address: the place it gives up is the one it gets (its count goes to 0 and back to 1).
  auto second = table.open("x", nullptr);
  ASSERT_TRUE(second.lease);
  EXPECT_EQ(evictions, 1);
  EXPECT_EQ(table.count("x"), 1u);
  first.lease.reset();  // the evicted connection finally closes
  EXPECT_EQ(table.size(), 1u);
  EXPECT_EQ(table.count("x"), 1u);
  second.lease.reset();
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.count("x"), 0u);
}

TEST(ConnectionTable, PerClientRefusalComesBeforeAnyEviction) {
  ConnectionTable table(limits(2, 1));
  int evictions = 0;
  auto a = table.open("a", [&] { ++evictions; });
  auto b = table.open("b", [&] { ++evictions; });
  a.lease->idle();
  b.lease->idle();
  EXPECT_EQ(table.open("a", nullptr).refused, ConnectionTable::Refused::kClientLimit);
  EXPECT_EQ(evictions, 0);
}

TEST(ConnectionTable, ManyThreadsOpeningAndClosingLeaveItEmpty) {
  ConnectionTable table(limits(64, 16));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&table, t] {
      const std::string client = "10.0.0." + std::to_string(t % 2);
      for (int i = 0; i < 2000; ++i) {
        auto a = table.open(client, [] {});
        if (!a.lease) continue;
        a.lease->idle();
        (void)a.lease->busy();
        a.lease->idle();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.idle_count(), 0u);
  EXPECT_EQ(table.count("10.0.0.0"), 0u);
}

}  // namespace
}  // namespace courier::gateway
