// How a worker splits its capacity between the brokers it serves.
#include <gtest/gtest.h>

#include "workers/worker.hpp"

namespace courier::workers {
namespace {

std::uint32_t total_over(std::uint32_t capacity, std::size_t brokers) {
  std::uint32_t sum = 0;
  for (std::size_t rank = 0; rank < brokers; ++rank) sum += capacity_share(capacity, brokers, rank);
  return sum;
}

TEST(CapacityShare, OneBrokerGetsEverything) {
  EXPECT_EQ(capacity_share(256, 1, 0), 256u);
  EXPECT_EQ(capacity_share(256, 0, 0), 256u);  // defensive: no broker counted at all
}

TEST(CapacityShare, SharesAddUpToTheCapacity) {
  for (std::uint32_t capacity : {2u, 3u, 7u, 256u, 1000u}) {
    for (std::size_t brokers : {2u, 3u, 4u}) {
      if (capacity < brokers) continue;
      EXPECT_EQ(total_over(capacity, brokers), capacity) << capacity << " over " << brokers;
    }
  }
  EXPECT_EQ(capacity_share(7, 3, 0), 3u);
  EXPECT_EQ(capacity_share(7, 3, 1), 2u);
  EXPECT_EQ(capacity_share(7, 3, 2), 2u);
}

TEST(CapacityShare, EveryBrokerGetsAtLeastOne) {
  EXPECT_EQ(capacity_share(1, 3, 0), 1u);
  EXPECT_EQ(capacity_share(1, 3, 2), 1u);
}

}  // namespace
}  // namespace courier::workers
