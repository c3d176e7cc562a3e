// The dashboard rendered by a real browser (headless Chromium from Debian) against a running
// topology: the numbers it shows must change with traffic, the plots have their axes and legends,
// the workers list merges brokers, and a screenshot shows the plots move.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "tests/integration/topology.hpp"
#include "tests/support/test_upstream.hpp"

#ifdef COURIER_HAVE_PNG
#include <png.h>
#endif

namespace courier::testing {
namespace {

using namespace std::chrono_literals;

std::string chromium_binary() {
  for (const char* path : {"/usr/bin/chromium", "/usr/bin/chromium-browser"}) {
    if (std::filesystem::exists(path)) return path;
  }
  return {};
}

// Loads the page headless, lets its timers and fetches run, then does `what` (--dump-dom, or
// --screenshot=FILE). The same window size for both, so the DOM's coordinates are the image's.
std::string run_chromium(const std::string& url, const std::string& what) {
  static int runs = 0;
  const auto profile =
      std::filesystem::temp_directory_path() /
      ("courier-chromium-" + std::to_string(::getpid()) + "-" + std::to_string(++runs));
  ChildProcess browser(
      chromium_binary(),
      {"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
       "--disable-background-networking", "--disable-component-update", "--disable-sync",
       "--hide-scrollbars", "--window-size=1280,2400", "--force-device-scale-factor=1",
       "--user-data-dir=" + profile.string(), "--virtual-time-budget=2500", what, url});
  browser.wait_exit(60s);
  std::filesystem::remove_all(profile);
  return browser.log_text();
}

std::string rendered_dom(const std::string& url) { return run_chromium(url, "--dump-dom"); }

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

std::string dashboard_url(const Topology& topology) {
  return "http://127.0.0.1:" + std::to_string(topology.admin_port()) + "/dashboard";
}

TEST(Dashboard, RenderedValuesFollowTraffic) {
  if (chromium_binary().empty()) GTEST_SKIP() << "chromium is not installed";
  TestUpstream upstream;
  TopologyOptions options;
  options.upstreams = {{"rule-engine", upstream.url()}, {"ai-gm", upstream.url()}};
  Topology topology(options);
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();
  const auto url = dashboard_url(topology);

  const auto page = topology.admin("/dashboard");
  ASSERT_EQ(page.status, 200u);
  EXPECT_EQ(page.header("Content-Type"), "text/html; charset=utf-8");
  // Self-contained: nothing loaded from elsewhere (the SVG namespace URI is a name, not a load).
  const std::regex external(
      R"re((src|href)\s*=\s*["']?\s*(https?:)?//|@import|url\(\s*["']?(https?:)?//)re",
      std::regex::icase);
  EXPECT_FALSE(std::regex_search(page.body, external)) << "the page must load no external asset";
  const std::regex fetches(R"re(fetch\(\s*"(/[^"]*)")re");
  for (auto it = std::sregex_iterator(page.body.begin(), page.body.end(), fetches);
       it != std::sregex_iterator(); ++it) {
    EXPECT_TRUE((*it)[1] == "/services" || (*it)[1] == "/services/history") << (*it)[1];
  }

  const auto before = rendered_dom(url);
  const auto workers = shown(before, "rule-engine.workers");
  ASSERT_TRUE(workers) << before;
  EXPECT_EQ(*workers, 1);
  const auto requests_before = shown(before, "rule-engine.requests").value_or(-1);
  EXPECT_EQ(shown_text(before, "rule-engine.circuit"), "closed") << before;
  // The workers list: each worker with its state, its broker and its own breaker.
  // (Keys are regular expressions: service.worker.field, the worker named rule-engine-N.)
  EXPECT_EQ(shown_text(before, "rule-engine\\.rule-engine-[0-9]+\\.state"), "live") << before;
  EXPECT_EQ(shown_text(before, "rule-engine\\.rule-engine-[0-9]+\\.brokers"), "test-broker-1");
  EXPECT_EQ(shown_text(before, "rule-engine\\.rule-engine-[0-9]+\\.circuit"), "closed");
  EXPECT_EQ(shown_text(before, "ai-gm\\.ai-gm-[0-9]+\\.state"), "live") << before;
  // Per service, two plots with a time axis, a value axis in its unit, and a legend.
  for (const std::string svc : {"rule-engine", "ai-gm"}) {
    EXPECT_EQ(shown_text(before, svc + "\\.plot\\.rate\\.y-unit"), "req/s") << before;
    EXPECT_EQ(shown_text(before, svc + "\\.plot\\.latency\\.y-unit"), "ms") << before;
    EXPECT_EQ(shown_text(before, svc + "\\.plot\\.rate\\.x-unit"), "time, minutes before now");
    EXPECT_EQ(shown_text(before, svc + "\\.plot\\.rate\\.legend\\.0"), "requests/s");
    EXPECT_EQ(shown_text(before, svc + "\\.plot\\.rate\\.legend\\.1"), "errors/s (5xx)");
    EXPECT_EQ(shown_text(before, svc + "\\.plot\\.latency\\.legend\\.1"), "p99");
  }
  EXPECT_NE(before.find("This gateway's view"), std::string::npos) << before;
  EXPECT_NE(before.find(">now<"), std::string::npos) << "the time axis ends at now";
  EXPECT_NE(before.find(">−15<"), std::string::npos) << "the time axis starts 15 minutes back";

  for (int i = 0; i < 25; ++i) ASSERT_EQ(topology.get("/rule-engine/x").status, 200u);
  ASSERT_TRUE(wait_until(
      [&] {
        const auto after = rendered_dom(url);
        return shown(after, "rule-engine.requests").value_or(0) >= requests_before + 25 &&
               shown(after, "rule-engine.p50").has_value();
      },
      60s, 100ms));
}

TEST(Dashboard, WorkersAreOneRowEachAcrossBrokers) {
  if (chromium_binary().empty()) GTEST_SKIP() << "chromium is not installed";
  TestUpstream upstream;
  TopologyOptions options;
  options.upstreams = {{"rule-engine", upstream.url()}, {"ai-gm", upstream.url()}};
  options.brokers = 2;
  Topology topology(options);
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();
  const auto key = std::string("rule-engine\\.rule-engine-[0-9]+\\.");
  std::string dom;
  // Until both brokers list the worker (it registers with each on its own heartbeat).
  ASSERT_TRUE(wait_until(
      [&] {
        dom = rendered_dom(dashboard_url(topology));
        return shown_text(dom, key + "brokers") == "test-broker-1, test-broker-2";
      },
      60s, 100ms))
      << dom;
  // One row, not one per broker, with the capacity it gives both brokers added up.
  const std::regex rows("data-k=\"" + key + "state\"");
  EXPECT_EQ(
      std::distance(std::sregex_iterator(dom.begin(), dom.end(), rows), std::sregex_iterator()), 1)
      << dom;
  EXPECT_EQ(shown_text(dom, key + "state"), "live");
  EXPECT_EQ(shown(dom, key + "capacity"), shown(dom, "rule-engine\\.capacity"));
  // And the brokers, each with its state.
  EXPECT_EQ(shown_text(dom, "broker\\.0\\.id"), "test-broker-1") << dom;
  EXPECT_EQ(shown_text(dom, "broker\\.1\\.id"), "test-broker-2") << dom;
  EXPECT_EQ(shown_text(dom, "broker\\.0\\.state"), "connected");
  EXPECT_EQ(shown_text(dom, "broker\\.1\\.state"), "connected");
}

#ifdef COURIER_HAVE_PNG
struct Image {
  unsigned width = 0, height = 0;
  std::vector<std::uint8_t> rgba;
  std::uint32_t at(unsigned x, unsigned y) const {
    const auto* p = &rgba[(std::size_t{y} * width + x) * 4];
    return std::uint32_t{p[0]} << 16 | std::uint32_t{p[1]} << 8 | p[2];
  }
};

std::optional<Image> read_png(const std::filesystem::path& path) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str())) return std::nullopt;
  image.format = PNG_FORMAT_RGBA;
  Image out{image.width, image.height, std::vector<std::uint8_t>(PNG_IMAGE_SIZE(image))};
  if (!png_image_finish_read(&image, nullptr, out.rgba.data(), 0, nullptr)) {
    png_image_free(&image);
    return std::nullopt;
  }
  return out;
}

struct Rect {
  unsigned x = 0, y = 0, w = 0, h = 0;
};

// Where the page says a plot's data area is (markAreas in the page), in CSS pixels.
std::optional<Rect> area_of(const std::string& dom, const std::string& key) {
  const std::regex pattern("data-k=\"" + key + "\" data-rect=\"(\\d+),(\\d+),(\\d+),(\\d+)\"");
  std::smatch m;
  if (!std::regex_search(dom, m, pattern)) return std::nullopt;
  return Rect{static_cast<unsigned>(std::stoul(m[1])), static_cast<unsigned>(std::stoul(m[2])),
              static_cast<unsigned>(std::stoul(m[3])), static_cast<unsigned>(std::stoul(m[4]))};
}

// Pixels that differ between the two images inside `r`, its 2-pixel frame left out.
std::size_t changed_pixels(const Image& a, const Image& b, const Rect& r) {
  std::size_t n = 0;
  for (unsigned y = r.y + 2; y + 2 < r.y + r.h && y < a.height && y < b.height; ++y) {
    for (unsigned x = r.x + 2; x + 2 < r.x + r.w && x < a.width && x < b.width; ++x) {
      n += a.at(x, y) != b.at(x, y);
    }
  }
  return n;
}

std::optional<Image> screenshot(const std::string& url, const std::filesystem::path& file) {
  std::filesystem::remove(file);
  run_chromium(url, "--screenshot=" + file.string());
  return read_png(file);
}
#endif

TEST(Dashboard, PlotsChangeOnScreenWithTraffic) {
  if (chromium_binary().empty()) GTEST_SKIP() << "chromium is not installed";
#ifndef COURIER_HAVE_PNG
  GTEST_SKIP() << "built without libpng: cannot read Chromium's screenshots";
#else
  TestUpstream upstream;
  TopologyOptions options;
  options.upstreams = {{"rule-engine", upstream.url()}, {"ai-gm", upstream.url()}};
  Topology topology(options);
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();
  const auto url = dashboard_url(topology);
  const auto dir =
      std::filesystem::temp_directory_path() / ("courier-screens-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);

  const auto dom = rendered_dom(url);
  const auto rate_area = area_of(dom, "rule-engine.plot.rate.area");
  const auto latency_area = area_of(dom, "rule-engine.plot.latency.area");
  const auto idle_area = area_of(dom, "ai-gm.plot.rate.area");
  ASSERT_TRUE(rate_area && latency_area && idle_area) << dom;
  ASSERT_GT(rate_area->w, 100u);
  ASSERT_GT(rate_area->h, 50u);
  const auto before = screenshot(url, dir / "before.png");
  ASSERT_TRUE(before) << "no screenshot from chromium";
  ASSERT_GE(before->height, rate_area->y + rate_area->h) << "the plot is below the screenshot";

  for (int i = 0; i < 25; ++i) ASSERT_EQ(topology.get("/rule-engine/x").status, 200u);
  std::optional<Image> after;
  ASSERT_TRUE(wait_until(
      [&] {
        after = screenshot(url, dir / "after.png");
        return after && changed_pixels(*before, *after, *rate_area) > 20 &&
               changed_pixels(*before, *after, *latency_area) > 4;
      },
      60s, 100ms))
      << "the rule-engine plots did not change on screen; kept in " << dir;
  // The service that got no traffic still plots a flat zero: its data area looks the same.
  EXPECT_EQ(changed_pixels(*before, *after, *idle_area), 0u);
  if (!std::getenv("COURIER_KEEP_TEST_LOGS")) std::filesystem::remove_all(dir);
#endif
}

}  // namespace
}  // namespace courier::testing
