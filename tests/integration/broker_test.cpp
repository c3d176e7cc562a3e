// The broker's promise when a worker dies holding requests: each one is answered, by another
// worker when a second attempt is safe, or with 502 WORKER_LOST when it is not. None hangs.
#include <gtest/gtest.h>
#include <signal.h>

#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/integration/topology.hpp"
#include "tests/support/join_guard.hpp"
#include "tests/support/test_upstream.hpp"

namespace courier::testing {
namespace {

using namespace std::chrono_literals;

TEST(BrokerWorkerLoss, KilledWorkersRequestsAreRequeuedOrAnsweredWorkerLost) {
  TestUpstream upstream;
  // Long enough that every request is still at the upstream when the worker dies, even on a
  // loaded machine where starting 40 clients takes a while.
  upstream.set_default(Step::echo().after(4s));
  TopologyOptions options;
  options.upstreams = {{"rule-engine", upstream.url()}, {"ai-gm", upstream.url()}};
  options.env = {{"PROXY_TIMEOUT", "30"}};
  options.start = false;
  Topology topology(options);
  topology.start_broker();
  topology.start_worker("ai-gm");
  auto& victim = topology.start_worker("rule-engine");
  topology.start_worker("rule-engine");
  topology.start_gateway();
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();
  // Both rule-engine workers must hold capacity before the load, or the victim holds nothing.
  ASSERT_TRUE(topology.wait_workers("rule-engine", 2)) << topology.logs();

  constexpr int kEach = 20;
  std::mutex mutex;
  std::vector<std::pair<std::string, HttpResult>> results;
  std::vector<std::thread> clients;
  JoinGuard join(clients);
  for (int i = 0; i < 2 * kEach; ++i) {
    clients.emplace_back([&, i] {
      const std::string method = i % 2 ? "POST" : "GET";
      auto r =
          http_request(topology.gateway_port(), method, "/rule-engine/slow/" + std::to_string(i),
                       {}, method == "POST" ? "body" : "", 30s);
      std::lock_guard lock(mutex);
      results.emplace_back(method, std::move(r));
    });
  }
  // Everything is in flight at the upstream, shared between the two workers by free capacity.
  ASSERT_TRUE(upstream.wait_for_requests(2 * kEach, 15s)) << topology.logs();
  const auto killed_at = std::chrono::steady_clock::now();
  ASSERT_FALSE(victim.signal(SIGKILL));
  for (auto& t : clients) t.join();
  const auto took = std::chrono::steady_clock::now() - killed_at;

  int get_ok = 0, post_ok = 0, post_lost = 0;
  for (const auto& [method, r] : results) {
    ASSERT_TRUE(r.ok()) << method << ": " << r.error.message();
    if (method == "GET") {
      EXPECT_EQ(r.status, 200u) << r.body;
      get_ok += r.status == 200;
    } else if (r.status == 200) {
      ++post_ok;
    } else {
      EXPECT_EQ(r.status, 502u) << r.body;
      EXPECT_EQ(nlohmann::json::parse(r.body, nullptr, false).value("code", ""), "WORKER_LOST");
      ++post_lost;
    }
  }
  EXPECT_EQ(get_ok, kEach);
  EXPECT_EQ(post_ok + post_lost, kEach);
  EXPECT_GT(post_lost, 0) << "the killed worker held some POSTs";
  EXPECT_GT(post_ok, 0) << "the surviving worker's POSTs completed";
  // Requeued GETs start again on the survivor: one more upstream delay, far from any timeout.
  EXPECT_LT(took, 20s);
  // The requeued GETs reached the upstream a second time, through the survivor.
  EXPECT_GT(upstream.request_count(), static_cast<std::size_t>(2 * kEach));
  const auto services = nlohmann::json::parse(topology.admin("/services").body);
  EXPECT_GE(services["broker"]["counters"]["requeued"].get<int>(), 1);
  if (HasFailure()) std::cerr << topology.logs();
}

}  // namespace
}  // namespace courier::testing
