// courier-broker: routes requests from gateways to per-service worker pools.
#include <spdlog/spdlog.h>

#include "broker/broker.hpp"
#include "common/cli.hpp"

int main(int argc, char** argv) {
  using namespace courier;
  namespace opt = options::broker;
  CLI::App app{"courier-broker: routes requests from gateways to the worker pool of each service",
               "courier-broker"};
  CommonOptions common;
  add_common_options(app, common);
  auto& flags = common.flags;
  for (const auto* o : {&opt::kFrontend, &opt::kBackend, &opt::kId, &opt::kHeartbeat,
                        &opt::kLiveness, &opt::kNoWorkerGrace, &opt::kDrainTimeout}) {
    flags.add(app, *o);
  }

  return run_main(app, argc, argv, [&] {
    // Before any thread exists, so that libzmq's threads inherit the blocked mask.
    broker::block_termination_signals();
    const auto sources = common.sources();
    const ConfigFile file(sources);
    setup_logging("broker", common.log(file));
    const Settings settings = load_settings(sources);
    broker::BrokerOptions options;
    options.frontend = flags.text(opt::kFrontend, file);
    options.backend = flags.text(opt::kBackend, file);
    options.dispatcher.broker_id = flags.text(opt::kId, file);
    if (options.dispatcher.broker_id.empty()) options.dispatcher.broker_id = host_name("broker");
    const auto heartbeat = read_heartbeat(flags, opt::kHeartbeat, opt::kLiveness, file);
    options.dispatcher.heartbeat_interval = heartbeat.interval;
    options.dispatcher.liveness = heartbeat.liveness;
    options.dispatcher.no_worker_grace = flags.seconds(opt::kNoWorkerGrace, file);
    options.drain_timeout = flags.seconds(opt::kDrainTimeout, file);
    for (const auto& [name, svc] : settings.services) {
      options.dispatcher.max_queue[name] = svc.max_queue;
    }
    broker::Broker broker(std::move(options));
    return broker.run(true);
  });
}
