// courier-worker: forwards one service's requests from the broker to its upstream.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "common/asio.hpp"
#include "common/cli.hpp"
#include "common/signals.hpp"
#include "workers/worker.hpp"

int main(int argc, char** argv) {
  using namespace courier;
  CLI::App app{"courier-worker: forwards one service's requests from the broker to its upstream",
               "courier-worker"};
  CommonOptions common;
  add_common_options(app, common);
  std::string service, broker, worker_id, concurrency, heartbeat, liveness, drain;
  app.add_option("-s,--service", service, "Service to serve, e.g. rule-engine (required)")
      ->envname("COURIER_SERVICE");
  app.add_option("--broker", broker,
                 "Broker backend endpoint, or several separated by commas (the capacity is split "
                 "between them) [tcp://127.0.0.1:5556]")
      ->envname("COURIER_WORKER_BROKER");
  app.add_option("--id", worker_id, "Worker id in logs and stats [host-pid]")
      ->envname("COURIER_WORKER_ID");
  app.add_option("--concurrency", concurrency,
                 "Requests run at once (overrides services.<name>.concurrency) [256]")
      ->envname("COURIER_WORKER_CONCURRENCY");
  app.add_option("--heartbeat", heartbeat, "Broker heartbeat interval, seconds [0.25]")
      ->envname("COURIER_HEARTBEAT");
  app.add_option("--liveness", liveness, "Missed heartbeats before the broker is lost [4]")
      ->envname("COURIER_LIVENESS");
  app.add_option("--drain-timeout", drain, "On SIGTERM, seconds to finish in-flight requests [30]")
      ->envname("COURIER_WORKER_DRAIN_TIMEOUT");

  return run_main(app, argc, argv, [&] {
    setup_logging("worker", common.log);
    const auto sources = common.sources();
    const ConfigFile file(sources);
    const Settings settings = load_settings(sources);
    service = resolve(service, file, "worker.service", "");
    if (service.empty()) throw ConfigError("--service (COURIER_SERVICE) is required");
    const ServiceConfig* svc = settings.find(service);
    if (!svc) {
      std::string known;
      for (const auto& [name, s] : settings.services) known += (known.empty() ? "" : ", ") + name;
      throw ConfigError("--service: unknown service '" + service + "' (configured: " + known + ")");
    }
    ServiceConfig config = *svc;
    if (!concurrency.empty()) {
      config.worker_concurrency =
          static_cast<std::uint32_t>(parse_int("--concurrency", concurrency, 1, 100000));
    }
    workers::WorkerOptions options;
    options.brokers = parse_endpoints(
        "--broker (worker.broker)", resolve(broker, file, "worker.broker", "tcp://127.0.0.1:5556"));
    char host[256] = "worker";
    ::gethostname(host, sizeof host - 1);
    options.worker_id =
        resolve(worker_id, file, "worker.id", std::string(host) + "-" + std::to_string(::getpid()));
    options.heartbeat_interval = parse_seconds(
        "--heartbeat (worker.heartbeat)", resolve(heartbeat, file, "worker.heartbeat", "0.25"));
    if (options.heartbeat_interval.count() < 10) {
      throw ConfigError("--heartbeat (worker.heartbeat): must be at least 0.01 seconds");
    }
    options.liveness = static_cast<int>(parse_int(
        "--liveness (worker.liveness)", resolve(liveness, file, "worker.liveness", "4"), 1, 100));
    options.drain_timeout = parse_seconds("--drain-timeout (worker.drain_timeout)",
                                          resolve(drain, file, "worker.drain_timeout", "30"));

    TerminationSignals signals;  // installed before work starts: no signal is missed
    zmq::context_t context(1);
    workers::Worker worker(context, options, config);
    worker.start();
    const int signo = signals.wait();
    spdlog::info("worker received signal {}; draining", signo);
    const auto left = worker.drain_and_stop();
    if (left > 0) spdlog::warn("worker stopped with {} requests unfinished", left);
    spdlog::info("worker stopped");
    return 0;
  });
}
