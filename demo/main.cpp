// courier-demo-upstream: runs the Rule Engine or AI GM stand-in until SIGTERM/SIGINT.
// All behaviour lives in courier_demo; this file only turns flags into a Config and runs it.
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <random>
#include <thread>
#include <vector>

#include "common/cli.hpp"
#include "common/logging.hpp"
#include "demo/demo_upstream.hpp"

namespace {

using namespace courier;

constexpr int kExitBadOption = 2;

// Benchmarks hold thousands of connections; the default soft limit (often 1024) would cap them.
void raise_descriptor_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Courier demo upstream: emulates the Rule Engine or the AI GM.",
               "courier-demo-upstream"};
  std::string role_text = "rule-engine";
  std::string listen_text = "127.0.0.1:8031";
  int threads = 1;
  long latency_ms = 0;
  std::string latency_dist;
  double error_rate = 0;
  unsigned error_status = 503;
  double drop_rate = 0;
  long idle_timeout_ms = 60'000;
  long shutdown_timeout_ms = 10'000;
  std::string log_format = "text";
  std::string log_level = "info";
  std::optional<std::uint64_t> seed;

  app.add_option("--role", role_text, "Service to emulate: rule-engine or ai-gm")
      ->envname("COURIER_DEMO_ROLE")
      ->check(CLI::IsMember({"rule-engine", "ai-gm"}))
      ->capture_default_str();
  app.add_option("--listen", listen_text, "Address to listen on, HOST:PORT ([V6]:PORT)")
      ->envname("COURIER_DEMO_LISTEN")
      ->check([](const std::string& value) -> std::string {
        return demo::parse_listen(value) ? "" : "expected HOST:PORT with HOST an IP address";
      })
      ->capture_default_str();
  app.add_option("--threads", threads, "I/O threads")
      ->envname("COURIER_DEMO_THREADS")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--latency-ms", latency_ms, "Fixed latency added to every non-health request")
      ->envname("COURIER_DEMO_LATENCY_MS")
      ->check(CLI::Range(0L, 3'600'000L))
      ->capture_default_str();
  app.add_option("--latency-dist", latency_dist,
                 "Random latency added on top, in ms: uniform:MIN:MAX or normal:MEAN:STDDEV")
      ->envname("COURIER_DEMO_LATENCY_DIST")
      ->check([](const std::string& value) -> std::string {
        return demo::parse_latency_distribution(value)
                   ? ""
                   : "expected uniform:MIN:MAX (0 <= MIN <= MAX) or normal:MEAN:STDDEV (>= 0)";
      });
  app.add_option("--error-rate", error_rate, "Share of requests answered with --error-status")
      ->envname("COURIER_DEMO_ERROR_RATE")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--error-status", error_status, "Status of injected errors")
      ->envname("COURIER_DEMO_ERROR_STATUS")
      ->check(CLI::Range(400u, 599u))
      ->capture_default_str();
  app.add_option("--drop-rate", drop_rate,
                 "Share of requests whose connection is closed without a response")
      ->envname("COURIER_DEMO_DROP_RATE")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--idle-timeout-ms", idle_timeout_ms,
                 "Close keep-alive connections idle this long")
      ->envname("COURIER_DEMO_IDLE_TIMEOUT_MS")
      ->check(CLI::Range(1L, 86'400'000L))
      ->capture_default_str();
  app.add_option("--shutdown-timeout-ms", shutdown_timeout_ms,
                 "On SIGTERM, how long in-flight requests may take before a hard stop")
      ->envname("COURIER_DEMO_SHUTDOWN_TIMEOUT_MS")
      ->check(CLI::Range(0L, 3'600'000L))
      ->capture_default_str();
  app.add_option("--seed", seed, "Random seed for latency, faults and ids (default: random)")
      ->envname("COURIER_DEMO_SEED");
  app.add_option("--log-format", log_format, "text or json")
      ->envname("COURIER_DEMO_LOG_FORMAT")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical or off")
      ->envname("COURIER_DEMO_LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();

  app.set_version_flag("--version", version_line(app.get_name()),
                       "Print the version and source revision, and exit");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 prints help to stdout (exit 0) and errors, naming the option, to stderr.
    return app.exit(e) == 0 ? 0 : kExitBadOption;
  }
  if (error_rate + drop_rate > 1.0) {
    std::cerr << "--error-rate + --drop-rate must not exceed 1\n";
    return kExitBadOption;
  }

  demo::Config config;
  config.role = *demo::parse_role(role_text);
  config.listen = *demo::parse_listen(listen_text);
  config.latency = std::chrono::milliseconds(latency_ms);
  config.latency_distribution = *demo::parse_latency_distribution(latency_dist);
  config.faults = {error_rate, error_status, drop_rate};
  config.seed = seed.value_or(std::random_device{}());
  config.idle_timeout = std::chrono::milliseconds(idle_timeout_ms);

  courier::setup_logging("demo-" + std::string(demo::role_name(config.role)),
                         {log_level, log_format});
  raise_descriptor_limit();

  asio::io_context io(threads);
  std::optional<demo::DemoServer> server;
  try {
    server.emplace(io, config);
  } catch (const std::exception& e) {
    spdlog::critical("cannot listen on {}: {}", listen_text, e.what());
    return 1;
  }
  server->start();
  spdlog::info(
      "{} listening on {}:{} ({} threads, latency {} ms + '{}', error rate {} ({}), drop "
      "rate {}, seed {})",
      demo::role_name(config.role), config.listen.host, server->port(), threads, latency_ms,
      latency_dist.empty() ? "none" : latency_dist, error_rate, error_status, drop_rate,
      config.seed);

  // Shutdown control lives on one strand: the signal and the drained callback may race otherwise.
  auto control = asio::make_strand(io);
  asio::signal_set signals(control, SIGINT, SIGTERM);
  asio::steady_timer grace(control);
  bool forced = false;
  signals.async_wait([&](const boost::system::error_code& ec, int signal_number) {
    if (ec) return;
    spdlog::info("signal {}: draining {} connection(s)", signal_number,
                 server->active_connections());
    server->stop([&] {
      asio::post(control, [&] {
        grace.cancel();
        signals.cancel();
      });
    });
    grace.expires_after(std::chrono::milliseconds(shutdown_timeout_ms));
    grace.async_wait([&](const boost::system::error_code& wait_ec) {
      if (wait_ec) return;
      spdlog::warn("shutdown timeout: stopping with {} connection(s) open",
                   server->active_connections());
      forced = true;
      io.stop();
    });
    // A second signal means "now".
    signals.async_wait([&](const boost::system::error_code& again, int) {
      if (again) return;
      forced = true;
      io.stop();
    });
  });

  std::vector<std::thread> workers;
  for (int i = 1; i < threads; ++i) workers.emplace_back([&io] { io.run(); });
  io.run();
  for (auto& worker : workers) worker.join();
  spdlog::info("stopped after {} request(s){}", server->requests_served(),
               forced ? " (forced)" : "");
  spdlog::shutdown();
  return forced ? 1 : 0;
}
