// Correlation ids and generated request ids: unique, unpredictable (no shared prefix, no counter,
// balanced bits), safe across threads and across fork().
#include "common/ids.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <thread>
#include <vector>

namespace courier {
namespace {

TEST(IdGenerator, IdsFromManyThreadsAreAllDistinct) {
  IdGenerator ids;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20'000;
  std::vector<std::vector<protocol::CorrelationId>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) got[t].push_back(ids.next());
    });
  }
  for (auto& t : threads) t.join();
  std::set<protocol::CorrelationId> all;
  for (const auto& v : got) all.insert(v.begin(), v.end());
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kThreads * kPerThread));
}

// A prefix and a counter (the former scheme) would fail both: consecutive ids shared their first
// eight bytes and their last eight counted up by one.
TEST(IdGenerator, ConsecutiveIdsShareNoPrefixAndDoNotCount) {
  IdGenerator ids;
  auto previous = ids.next();
  for (int i = 0; i < 1000; ++i) {
    const auto id = ids.next();
    EXPECT_FALSE(std::equal(id.begin(), id.begin() + 8, previous.begin())) << i;
    EXPECT_FALSE(std::equal(id.begin(), id.begin() + 15, previous.begin())) << i;
    previous = id;
  }
}

// Every one of the 128 bits is set in about half of the ids: 10,000 ids give a standard deviation
// of 0.5 %, so the bounds are ten of them away (a biased or constant bit fails at once).
TEST(IdGenerator, EveryBitIsSetInAboutHalfOfTheIds) {
  IdGenerator ids;
  constexpr int kIds = 10'000;
  std::array<int, 128> ones{};
  for (int i = 0; i < kIds; ++i) {
    const auto id = ids.next();
    for (int bit = 0; bit < 128; ++bit) ones[bit] += (id[bit / 8] >> (bit % 8)) & 1;
  }
  for (int bit = 0; bit < 128; ++bit) {
    EXPECT_GT(ones[bit], kIds * 45 / 100) << bit;
    EXPECT_LT(ones[bit], kIds * 55 / 100) << bit;
  }
}

TEST(IdGenerator, RequestIdsAre32HexDigitsAndNotTheCorrelationIds) {
  IdGenerator ids;
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const auto before = to_hex(ids.next());
    const auto request_id = ids.next_request_id();
    const auto after = to_hex(ids.next());
    ASSERT_EQ(request_id.size(), 32u);
    EXPECT_TRUE(std::all_of(request_id.begin(), request_id.end(), [](char c) {
      return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    })) << request_id;
    EXPECT_NE(request_id, before);
    EXPECT_NE(request_id, after);
    EXPECT_NE(request_id.substr(0, 16), before.substr(0, 16));
    seen.insert(request_id);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(RandomBytes, RequestsLargerThanABatchAreFilledToo) {
  std::vector<std::uint8_t> a(5000), b(5000);
  random_bytes(a);
  random_bytes(b);
  EXPECT_NE(a, b);
  // 5,000 random bytes hold every value at least once with near certainty, and zero only ~20 times.
  EXPECT_LT(std::count(a.begin(), a.end(), 0), 100);
  EXPECT_EQ(std::set<std::uint8_t>(a.begin(), a.end()).size(), 256u);
}

// The batch a thread holds is not inherited: a forked child draws fresh bytes, not the ones its
// parent is about to hand out next.
TEST(RandomBytes, AForkedChildDoesNotRepeatItsParentsBytes) {
  std::array<std::uint8_t, 16> first{};
  random_bytes(first);  // the parent's batch now holds bytes for later calls
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::array<std::uint8_t, 16> mine{};
    random_bytes(mine);
    const auto n = ::write(pipe_fds[1], mine.data(), mine.size());
    ::_exit(n == static_cast<ssize_t>(mine.size()) ? 0 : 1);
  }
  ::close(pipe_fds[1]);
  std::array<std::uint8_t, 16> childs{};
  std::size_t got = 0;
  while (got < childs.size()) {
    const auto n = ::read(pipe_fds[0], childs.data() + got, childs.size() - got);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(pipe_fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_EQ(got, childs.size());
  std::array<std::uint8_t, 16> parents{};
  random_bytes(parents);
  EXPECT_NE(childs, parents);
}

}  // namespace
}  // namespace courier
