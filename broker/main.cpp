// courier-broker: routes requests from gateways to per-service worker pools.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "broker/broker.hpp"
#include "common/cli.hpp"

int main(int argc, char** argv) {
  using namespace courier;
  CLI::App app{"courier-broker: routes requests from gateways to the worker pool of each service",
               "courier-broker"};
  CommonOptions common;
  add_common_options(app, common);
  std::string frontend, backend, broker_id, heartbeat, liveness, grace, drain;
  app.add_option("--frontend", frontend, "Endpoint gateways connect to [tcp://0.0.0.0:5555]")
      ->envname("COURIER_BROKER_FRONTEND");
  app.add_option("--backend", backend, "Endpoint workers connect to [tcp://0.0.0.0:5556]")
      ->envname("COURIER_BROKER_BACKEND");
  app.add_option("--id", broker_id, "Broker id in stats and logs [hostname]")
      ->envname("COURIER_BROKER_ID");
  app.add_option("--heartbeat", heartbeat, "Heartbeat interval, seconds [0.25]")
      ->envname("COURIER_HEARTBEAT");
  app.add_option("--liveness", liveness, "Missed heartbeats before a peer is dead [4]")
      ->envname("COURIER_LIVENESS");
  app.add_option("--no-worker-grace", grace,
                 "Seconds a request waits for a worker of its service to appear [1]")
      ->envname("COURIER_NO_WORKER_GRACE");
  app.add_option("--drain-timeout", drain, "On SIGTERM, seconds to wait for replies [5]")
      ->envname("COURIER_BROKER_DRAIN_TIMEOUT");

  return run_main(app, argc, argv, [&] {
    // Before any thread exists, so that libzmq's threads inherit the blocked mask.
    broker::block_termination_signals();
    setup_logging("broker", common.log);
    const auto sources = common.sources();
    const ConfigFile file(sources);
    const Settings settings = load_settings(sources);
    broker::BrokerOptions options;
    options.frontend = resolve(frontend, file, "broker.frontend", "tcp://0.0.0.0:5555");
    options.backend = resolve(backend, file, "broker.backend", "tcp://0.0.0.0:5556");
    char host[256] = "broker";
    ::gethostname(host, sizeof host - 1);
    options.dispatcher.broker_id = resolve(broker_id, file, "broker.id", host);
    options.dispatcher.heartbeat_interval = parse_seconds(
        "--heartbeat (broker.heartbeat)", resolve(heartbeat, file, "broker.heartbeat", "0.25"));
    if (options.dispatcher.heartbeat_interval.count() < 10) {
      throw ConfigError("--heartbeat (broker.heartbeat): must be at least 0.01 seconds");
    }
    options.dispatcher.liveness = static_cast<int>(parse_int(
        "--liveness (broker.liveness)", resolve(liveness, file, "broker.liveness", "4"), 1, 100));
    options.dispatcher.no_worker_grace =
        parse_seconds("--no-worker-grace (broker.no_worker_grace)",
                      resolve(grace, file, "broker.no_worker_grace", "1"));
    options.drain_timeout = parse_seconds("--drain-timeout (broker.drain_timeout)",
                                          resolve(drain, file, "broker.drain_timeout", "5"));
    for (const auto& [name, svc] : settings.services) {
      options.dispatcher.max_queue[name] = svc.max_queue;
    }
    broker::Broker broker(std::move(options));
    return broker.run(true);
  });
}
