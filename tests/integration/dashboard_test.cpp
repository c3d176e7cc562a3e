// The dashboard rendered by a real browser (headless Chromium from Debian) against a running
// topology: the numbers it shows must change with traffic.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "tests/integration/topology.hpp"
#include "tests/support/test_upstream.hpp"

namespace courier::testing {
namespace {

using namespace std::chrono_literals;

std::string chromium_binary() {
  for (const char* path : {"/usr/bin/chromium", "/usr/bin/chromium-browser"}) {
    if (std::filesystem::exists(path)) return path;
  }
  return {};
}

// Loads the page headless, lets its timers and fetches run, and returns the rendered DOM.
std::string rendered_dom(const std::string& url) {
  const auto profile =
      std::filesystem::temp_directory_path() / ("courier-chromium-" + std::to_string(::getpid()));
  ChildProcess browser(
      chromium_binary(),
      {"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
       "--disable-background-networking", "--disable-component-update", "--disable-sync",
       "--user-data-dir=" + profile.string(), "--virtual-time-budget=2500", "--dump-dom", url});
  browser.wait_exit(60s);
  std::filesystem::remove_all(profile);
  return browser.log_text();
}

std::optional<double> shown(const std::string& dom, const std::string& key) {
  const std::regex pattern("data-k=\"" + key + "\"[^>]*>([0-9.]+)<");
  std::smatch m;
  if (!std::regex_search(dom, m, pattern)) return std::nullopt;
  return std::stod(m[1]);
}

std::optional<std::string> shown_text(const std::string& dom, const std::string& key) {
  const std::regex pattern("data-k=\"" + key + "\"[^>]*>([^<]*)<");
  std::smatch m;
  if (!std::regex_search(dom, m, pattern)) return std::nullopt;
  return m[1];
}

TEST(Dashboard, RenderedValuesFollowTraffic) {
  if (chromium_binary().empty()) GTEST_SKIP() << "chromium is not installed";
  TestUpstream upstream;
  TopologyOptions options;
  options.upstreams = {{"rule-engine", upstream.url()}, {"ai-gm", upstream.url()}};
  Topology topology(options);
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();
  const auto url = "http://127.0.0.1:" + std::to_string(topology.admin_port()) + "/dashboard";

  const auto page = topology.admin("/dashboard");
  ASSERT_EQ(page.status, 200u);
  EXPECT_EQ(page.header("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(page.body.find("http://"), std::string::npos) << "the page must load no external asset";

  const auto before = rendered_dom(url);
  const auto workers = shown(before, "rule-engine.workers");
  ASSERT_TRUE(workers) << before;
  EXPECT_EQ(*workers, 1);
  const auto requests_before = shown(before, "rule-engine.requests").value_or(-1);
  EXPECT_EQ(shown_text(before, "rule-engine.circuit"), "closed") << before;
  // Each worker's own breaker is listed under Workers.
  const std::regex worker_circuit("data-k=\"rule-engine\\.[^\"]+\\.circuit\"[^>]*>closed<");
  EXPECT_TRUE(std::regex_search(before, worker_circuit)) << before;

  for (int i = 0; i < 25; ++i) ASSERT_EQ(topology.get("/rule-engine/x").status, 200u);
  ASSERT_TRUE(wait_until(
      [&] {
        const auto after = rendered_dom(url);
        return shown(after, "rule-engine.requests").value_or(0) >= requests_before + 25 &&
               shown(after, "rule-engine.p50").has_value();
      },
      60s, 100ms));
}

}  // namespace
}  // namespace courier::testing
