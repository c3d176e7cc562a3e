// courier-broker: routes requests from gateways to per-service worker pools.
#include <spdlog/spdlog.h>

#include "broker/broker.hpp"
#include "broker/broker_metrics.hpp"
#include "common/admin_http.hpp"
#include "common/cli.hpp"
#include "common/frames.hpp"

namespace {

// All three files, or none (no CURVE).
std::optional<courier::broker::CurveServerOptions> load_curve(const courier::OptionFlags& flags,
                                                              const courier::ConfigFile& file) {
  using namespace courier;
  namespace opt = options::broker;
  const auto secret = flags.text(opt::kCurveSecretKeyFile, file);
  const auto gateways = flags.text(opt::kCurveGatewayKeys, file);
  const auto workers = flags.text(opt::kCurveWorkerKeys, file);
  if (secret.empty() && gateways.empty() && workers.empty()) return std::nullopt;
  for (const auto& [value, o] : {std::pair{&secret, &opt::kCurveSecretKeyFile},
                                 std::pair{&gateways, &opt::kCurveGatewayKeys},
                                 std::pair{&workers, &opt::kCurveWorkerKeys}}) {
    if (value->empty()) {
      throw ConfigError("CURVE needs all of " + opt::kCurveSecretKeyFile.setting() + ", " +
                        opt::kCurveGatewayKeys.setting() + " and " +
                        opt::kCurveWorkerKeys.setting() + "; " + o->setting() + " is not set");
    }
  }
  if (!curve::available()) {
    throw ConfigError(opt::kCurveSecretKeyFile.setting() +
                      ": this libzmq was built without CURVE support");
  }
  broker::CurveServerOptions out;
  out.own = curve::load_secret_key(opt::kCurveSecretKeyFile.setting(), secret);
  out.gateways = curve::load_authorized(opt::kCurveGatewayKeys.setting(), gateways);
  out.workers = curve::load_authorized(opt::kCurveWorkerKeys.setting(), workers);
  return out;
}

}  // namespace

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
    options.insecure = flags.boolean(opt::kInsecure, file);
    options.curve = load_curve(flags, file);
    for (const auto& [name, svc] : settings.services) {
      options.dispatcher.max_queue[name] = svc.max_queue;
    }
    // Workers may register only for declared services: broker.services if set ("*": any, up to
    // max_services), else the services the shared configuration names.
    const auto declared = flags.text(opt::kServices, file);
    if (declared.empty()) {
      for (const auto& [name, svc] : settings.services) options.dispatcher.services.insert(name);
    } else if (declared != "*") {
      std::string item;
      for (std::size_t i = 0; i <= declared.size(); ++i) {
        if (i < declared.size() && declared[i] != ',') {
          if (declared[i] != ' ') item += declared[i];
          continue;
        }
        if (item.empty()) continue;
        if (!protocol::valid_service_name(item)) {
          throw ConfigError(opt::kServices.setting() + ": invalid service name " + item);
        }
        options.dispatcher.services.insert(item);
        item.clear();
      }
      if (options.dispatcher.services.empty()) {
        throw ConfigError(opt::kServices.setting() + ": no service named (use * for any)");
      }
    }
    options.dispatcher.max_services =
        static_cast<std::size_t>(flags.integer(opt::kMaxServices, file));
    options.dispatcher.max_workers_per_service =
        static_cast<std::size_t>(flags.integer(opt::kMaxWorkersPerService, file));
    options.dispatcher.max_gateways =
        static_cast<std::size_t>(flags.integer(opt::kMaxGateways, file));
    options.max_request_message = flags.integer(opt::kMaxRequestMessage, file);
    options.max_reply_message = flags.integer(opt::kMaxReplyMessage, file);
    broker::check_plain_endpoints(options);
    if (config_only(app, common, [&] {
          auto rows = option_rows(flags, file, "broker.");
          for (auto& row : service_rows(trace)) rows.push_back(std::move(row));
          return rows;
        })) {
      return 0;
    }
    if (options.dispatcher.services.empty()) {
      spdlog::warn("broker accepts workers for any service (broker.services=*), at most {}",
                   options.dispatcher.max_services);
    } else {
      spdlog::info("broker accepts workers for {} declared service(s)",
                   options.dispatcher.services.size());
    }
    const auto admin_listen = flags.text(opt::kAdminListen, file);
    broker::Broker broker(std::move(options));
    // After the broker's sockets are bound: /readyz says so, /metrics reads its snapshots.
    std::optional<AdminHttpServer> admin;
    if (!admin_listen.empty()) {
      admin.emplace(opt::kAdminListen.setting(), admin_listen,
                    std::map<std::string, AdminHandler, std::less<>>{
                        {"/healthz", [] { return json_status(200, "ok"); }},
                        {"/readyz",
                         [&broker] {
                           return broker.serving()
                                      ? json_status(200, "ready")
                                      : json_status(503, "not ready", "broker not serving");
                         }},
                        {"/metrics", [&broker] {
                           auto families = metrics::process_families("broker");
                           if (const auto stats = broker.snapshot(std::chrono::seconds(1))) {
                             broker::add_broker_metrics(families, *stats);
                           }
                           return AdminResponse{200, std::string(metrics::kContentType),
                                                metrics::serialize(families)};
                         }}});
      spdlog::info(
          "broker admin listening on {} (/metrics, /healthz, /readyz)",
          admin->endpoint().address().to_string() + ":" + std::to_string(admin->endpoint().port()));
      admin->start();
    }
    const int code = broker.run(true);
    if (admin) admin->stop();
    return code;
  });
}
