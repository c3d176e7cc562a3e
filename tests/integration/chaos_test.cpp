// Chaos under steady load: workers are SIGKILLed and restarted, one is drained with SIGTERM, and
// the broker is killed and restarted once, while clients send idempotent GETs and POSTs whose
// targets and bodies carry their own ids. Every request must get the right answer, in time.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <mutex>
#include <random>
#include <thread>

#include "tests/integration/topology.hpp"
#include "tests/support/join_guard.hpp"
#include "tests/support/test_upstream.hpp"

namespace courier::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Outcome {
  std::string method;
  unsigned status = 0;
  std::string code;  // error code, if any
  bool transport_error = false;
  bool wrong_reply = false;
  Clock::time_point sent, answered;
};

std::string error_code_of(const HttpResult& r) {
  const auto pos = r.body.find("\"code\":\"");
  if (pos == std::string::npos) return {};
  const auto start = pos + 8;
  return r.body.substr(start, r.body.find('"', start) - start);
}

TEST(Chaos, EveryRequestIsAnsweredCorrectlyWhileProcessesDie) {
  TestUpstream upstream;
  upstream.set_default(Step::echo().after(15ms));
  TopologyOptions options;
  options.upstreams = {{"rule-engine", upstream.url()}, {"ai-gm", upstream.url()}};
  options.start = false;
  options.gateway_threads = 1;  // the broker links on the HTTP thread (most other tests: 2)
  options.env = {{"PROXY_RETRY_MIN_WAIT", "0.01"}, {"PROXY_RETRY_MAX_WAIT", "0.05"},
                 {"PROXY_TIMEOUT", "5"},           {"COURIER_WORKER_DRAIN_TIMEOUT", "5"},
                 {"COURIER_LOG_LEVEL", "warn"},    {"COURIER_ACCESS_LOG", "false"}};
  Topology topology(options);
  topology.start_broker();
  topology.start_worker("ai-gm");  // bystander: readiness needs every service; never killed
  for (int i = 0; i < 3; ++i) topology.start_worker("rule-engine");
  topology.start_gateway();
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();
  ASSERT_TRUE(topology.wait_workers("rule-engine", 3)) << topology.logs();

  constexpr auto kDuration = 24s;
  constexpr int kClients = 6;
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> sent{0};
  std::mutex mutex;
  std::vector<Outcome> outcomes;
  std::vector<std::thread> clients;
  JoinGuard join(clients, [&] { stop.store(true); });
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      std::uint64_t n = 0;
      while (!stop.load()) {
        std::string id = "c";
        id += std::to_string(c) + '-' + std::to_string(n++);
        const bool get = n % 2 == 0;
        Outcome o;
        o.method = get ? "GET" : "POST";
        o.sent = Clock::now();
        sent.fetch_add(1);
        HeaderList headers = {{"X-Request-Timeout", "4"}};
        if (!get && n % 4 == 1) headers.emplace_back("Idempotency-Key", id);
        const auto r = http_request(topology.gateway_port(), o.method, "/rule-engine/chaos/" + id,
                                    headers, get ? "" : "body-of-" + id, 8s);
        o.answered = Clock::now();
        if (!r.ok()) {
          o.transport_error = true;
        } else {
          o.status = r.status;
          o.code = error_code_of(r);
          if (r.status == 200) {
            // The echo names the target it served: a reply for someone else would show here.
            o.wrong_reply = r.header("X-Echo-Target") != "/chaos/" + id ||
                            (!get && r.body.find("body-of-" + id) == std::string::npos);
          }
        }
        std::lock_guard lock(mutex);
        outcomes.push_back(o);
      }
    });
  }

  // The chaos schedule.
  std::mt19937 rng(20261127);
  const auto start = Clock::now();
  Clock::time_point broker_down{}, broker_up{};
  bool drained = false, broker_restarted = false;
  int kills = 0;
  while (Clock::now() - start < kDuration) {
    std::this_thread::sleep_for(1500ms);  // pacing of the chaos, not synchronisation
    auto& workers = topology.workers();
    const auto elapsed = Clock::now() - start;
    if (!broker_restarted && elapsed > kDuration / 2) {
      broker_down = Clock::now();
      topology.broker().signal(SIGKILL);
      topology.broker().wait_exit(5s);
      topology.start_broker();
      ASSERT_TRUE(topology.wait_ready(10s))
          << (topology.broker().running() ? "" : "the restarted broker exited (port taken?)\n")
          << topology.logs();
      broker_up = Clock::now();
      broker_restarted = true;
      continue;
    }
    const auto victim = 1 + rng() % (workers.size() - 1);
    if (!drained && elapsed > kDuration / 4) {
      workers[victim]->signal(SIGTERM);  // graceful: must finish what it holds
      drained = true;
    } else {
      workers[victim]->signal(SIGKILL);
      ++kills;
    }
    topology.start_worker("rule-engine");
  }
  stop.store(true);
  for (auto& t : clients) t.join();

  std::size_t ok = 0, get_failures_outside_restart = 0, slow_failures = 0, wrong = 0, transport = 0,
              bad_post = 0;
  for (const auto& o : outcomes) {
    if (o.transport_error) {
      ++transport;
      continue;
    }
    wrong += o.wrong_reply;
    if (o.status == 200) {
      ++ok;
      continue;
    }
    const bool during_restart = o.answered >= broker_down - 200ms && o.sent <= broker_up + 500ms;
    if (o.method == "GET" && !(during_restart && o.code == "BROKER_UNAVAILABLE")) {
      ++get_failures_outside_restart;
      ADD_FAILURE() << "GET failed outside the broker restart: " << o.status << " " << o.code;
    }
    if (o.method == "POST" && o.code != "WORKER_LOST" && o.code != "BROKER_UNAVAILABLE") {
      ++bad_post;
      ADD_FAILURE() << "POST failed unexpectedly: " << o.status << " " << o.code;
    }
    if (o.code == "BROKER_UNAVAILABLE" && o.answered - o.sent > 2s) ++slow_failures;
  }
  std::cout << "chaos: sent " << sent.load() << ", answered " << outcomes.size() << ", ok " << ok
            << ", worker kills " << kills << ", drained " << drained << ", broker restarted "
            << broker_restarted << "\n";
  EXPECT_EQ(sent.load(), outcomes.size());
  EXPECT_EQ(transport, 0u) << "requests without an HTTP answer";
  EXPECT_EQ(wrong, 0u) << "replies that belonged to another request";
  EXPECT_EQ(slow_failures, 0u) << "broker loss must be reported promptly";
  EXPECT_GT(ok, outcomes.size() / 2);
  EXPECT_TRUE(broker_restarted);
  EXPECT_GE(kills, 5);
  if (HasFailure()) std::cerr << topology.logs();
}

}  // namespace
}  // namespace courier::testing
