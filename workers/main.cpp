// courier-worker: forwards one service's requests from the broker to its upstream.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "common/admin_http.hpp"
#include "common/asio.hpp"
#include "common/cli.hpp"
#include "common/signals.hpp"
#include "workers/worker.hpp"

int main(int argc, char** argv) {
  using namespace courier;
  namespace opt = options::worker;
  CLI::App app{"courier-worker: forwards one service's requests from the broker to its upstream",
               "courier-worker"};
  CommonOptions common;
  add_common_options(app, common);
  auto& flags = common.flags;
  flags.add(app, opt::kService, "-s,--service");
  for (const auto* o :
       {&opt::kBroker, &opt::kId, &opt::kHeartbeat, &opt::kLiveness, &opt::kDrainTimeout,
        &opt::kCurveSecretKeyFile, &opt::kCurveBrokerKeyFile, &opt::kAdminListen}) {
    flags.add(app, *o);
  }
  // Not a worker.* option but the service's own setting: COURIER_WORKER_CONCURRENCY is its
  // default layer, which a per-service value beats, so the flag alone overrides them.
  std::string concurrency;
  const auto* field = find_service_field("concurrency");
  app.add_option("--concurrency", concurrency,
                 "Requests run at once (overrides services.<name>.concurrency) [" +
                     std::string(field->fallback) + "]");

  return run_main(app, argc, argv, [&] {
    const auto sources = common.sources();
    const ConfigFile file(sources);
    setup_logging("worker", common.log(file));
    std::vector<TracedSetting> trace;
    const Settings settings = load_settings(sources, &trace);
    const auto service = flags.text(opt::kService, file);
    if (service.empty()) throw ConfigError("--service (COURIER_SERVICE) is required");
    const ServiceConfig* svc = settings.find(service);
    if (!svc) {
      std::string known;
      for (const auto& [name, s] : settings.services) known += (known.empty() ? "" : ", ") + name;
      throw ConfigError("--service: unknown service '" + service + "' (configured: " + known + ")");
    }
    ServiceConfig config = *svc;
    if (!concurrency.empty()) field->apply(config, "--concurrency", concurrency);
    workers::WorkerOptions options;
    options.brokers = flags.endpoints(opt::kBroker, file);
    options.worker_id = flags.text(opt::kId, file);
    if (options.worker_id.empty()) {
      options.worker_id = host_name("worker") + "-" + std::to_string(::getpid());
    }
    const auto heartbeat = read_heartbeat(flags, opt::kHeartbeat, opt::kLiveness, file);
    options.heartbeat_interval = heartbeat.interval;
    options.liveness = heartbeat.liveness;
    options.drain_timeout = flags.seconds(opt::kDrainTimeout, file);
    options.curve = curve::load_client_keys(
        opt::kCurveSecretKeyFile.setting(), flags.text(opt::kCurveSecretKeyFile, file),
        opt::kCurveBrokerKeyFile.setting(), flags.text(opt::kCurveBrokerKeyFile, file));
    if (config_only(app, common, [&] {
          auto rows = option_rows(flags, file, "worker.");
          // Only its own service's settings, with --concurrency where it was given.
          const auto own = "services." + service + ".";
          for (auto& row : service_rows(trace)) {
            if (!row.key.starts_with(own)) continue;
            if (row.key == own + "concurrency" && !concurrency.empty()) {
              row = {row.key, concurrency, "flag --concurrency"};
            }
            rows.push_back(std::move(row));
          }
          return rows;
        })) {
      return 0;
    }
    if (options.curve) {
      spdlog::info("broker links: CURVE on, public key {}", options.curve->own.public_key);
    } else {
      spdlog::warn(
          "broker links: CURVE off (no {}): traffic to the broker is neither "
          "authenticated nor encrypted",
          opt::kCurveSecretKeyFile.setting());
    }

    TerminationSignals signals;  // installed before work starts: no signal is missed
    zmq::context_t context(1);
    const auto admin_listen = flags.text(opt::kAdminListen, file);
    workers::Worker worker(context, options, config);
    // Bound before the worker starts: a busy admin address stops start-up.
    std::optional<AdminHttpServer> admin;
    if (!admin_listen.empty()) {
      admin.emplace(
          opt::kAdminListen.setting(), admin_listen,
          std::map<std::string, AdminHandler, std::less<>>{
              {"/healthz", [] { return json_status(200, "ok"); }},
              {"/readyz",
               [&worker] {
                 if (worker.draining()) return json_status(503, "not ready", "draining");
                 if (worker.brokers_alive() == 0) {
                   return json_status(503, "not ready", "not registered with any broker");
                 }
                 return json_status(200, "ready");
               }},
              {"/metrics", [&worker] {
                 auto families = metrics::process_families("worker");
                 if (const auto snapshot = worker.metrics_snapshot(std::chrono::seconds(1))) {
                   workers::add_worker_metrics(families, *snapshot);
                 }
                 return AdminResponse{200, std::string(metrics::kContentType),
                                      metrics::serialize(families)};
               }}});
      spdlog::info(
          "worker admin listening on {} (/metrics, /healthz, /readyz)",
          admin->endpoint().address().to_string() + ":" + std::to_string(admin->endpoint().port()));
    }
    worker.start();
    if (admin) admin->start();
    const int signo = signals.wait();
    spdlog::info("worker received signal {}; draining", signo);
    const auto left = worker.drain_and_stop();
    if (admin) admin->stop();
    if (left > 0) spdlog::warn("worker stopped with {} requests unfinished", left);
    spdlog::info("worker stopped");
    return 0;
  });
}
