// courier-broker: routes requests from gateways to per-service worker pools.
#include <spdlog/spdlog.h>

#include "broker/broker.hpp"
#include "broker/broker_setup.hpp"
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
                        &opt::kLiveness, &opt::kNoWorkerGrace, &opt::kDrainTimeout, &opt::kServices,
                        &opt::kMaxServices, &opt::kMaxWorkersPerService, &opt::kMaxGateways,
                        &opt::kMaxRequestMessage, &opt::kMaxReplyMessage, &opt::kCurveSecretKeyFile,
                        &opt::kCurveGatewayKeys, &opt::kCurveWorkerKeys, &opt::kAdminListen}) {
    flags.add(app, *o);
  }
  // A plain flag (no value); the setting itself may also come from --set, env or the file.
  bool insecure_flag = false;
  app.add_flag("--insecure", insecure_flag,
               std::string(opt::kInsecure.help) + " (env " + std::string(opt::kInsecure.env) + ")");

  return run_main(app, argc, argv, [&] {
    // Before any thread exists, so that libzmq's threads inherit the blocked mask.
    broker::block_termination_signals();
    const auto sources = common.sources();
    const ConfigFile file(sources);
    setup_logging("broker", common.log(file));
    std::vector<TracedSetting> trace;
    const Settings settings = load_settings(sources, &trace);
    if (insecure_flag) flags.given(opt::kInsecure, "true");
    auto options = broker::load_broker_options(flags, file, settings);
    broker::check_plain_endpoints(options);
    if (config_only(app, common, [&] {
          auto rows = option_rows(flags, file, "broker.");
          for (auto& row : service_rows(trace)) rows.push_back(std::move(row));
          return rows;
        })) {
      return 0;
    }
    broker::log_declared_services(options);
    const auto admin_listen = flags.text(opt::kAdminListen, file);
    broker::Broker broker(std::move(options));
    // After the broker's sockets are bound: /readyz says so, /metrics reads its snapshots.
    const auto admin = broker::make_admin(broker, admin_listen);
    if (admin) admin->start();
    const int code = broker.run(true);
    if (admin) admin->stop();
    return code;
  });
}
