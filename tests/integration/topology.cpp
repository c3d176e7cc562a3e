#include "tests/integration/topology.hpp"

#include <cctype>
#include <nlohmann/json.hpp>

namespace courier::testing {

namespace {

std::string env_prefix(const std::string& service) {
  std::string out;
  for (char c : service) out += c == '-' ? '_' : static_cast<char>(std::toupper(c));
  return out;
}

}  // namespace

Topology::Topology(TopologyOptions options) : options_(std::move(options)) {
  // Held for the topology's life: a broker restarted on its ports finds them free, and tests
  // running in parallel cannot pick them in between.
  const auto reserve = [this] {
    reserved_.push_back(std::make_unique<ReservedPort>(/*for_server=*/true));
    return reserved_.back()->port();
  };
  gateway_port_ = reserve();
  admin_port_ = reserve();
  for (int i = 0; i < (options_.embedded_broker ? 1 : options_.brokers); ++i) {
    frontend_ports_.push_back(reserve());
    backend_ports_.push_back(reserve());
  }
  brokers_.resize(options_.embedded_broker ? 0 : frontend_ports_.size());
  if (!options_.start) return;
  for (std::size_t i = 0; i < brokers_.size(); ++i) start_broker(i);
  for (const auto& [service, url] : options_.upstreams) {
    for (int i = 0; i < options_.workers_per_service; ++i) start_worker(service);
  }
  start_gateway();
}

Topology::~Topology() {
  // Gateway first so nothing new arrives, then workers, then the broker.
  gateway_.reset();
  workers_.clear();
  brokers_.clear();
}

namespace {

std::string endpoint(std::uint16_t port) { return "tcp://127.0.0.1:" + std::to_string(port); }

std::string endpoints(const std::vector<std::uint16_t>& ports) {
  std::string out;
  for (auto port : ports) {
    if (!out.empty()) out += ',';
    out += endpoint(port);
  }
  return out;
}

}  // namespace

std::string Topology::frontends() const { return endpoints(frontend_ports_); }
std::string Topology::backends() const { return endpoints(backend_ports_); }

EnvList Topology::environment() const {
  EnvList env = {{"COURIER_LOG_LEVEL", "info"}, {"COURIER_HEARTBEAT", "0.1"}};
  for (const auto& [service, url] : options_.upstreams) {
    env.emplace_back(env_prefix(service) + "_URL", url);
  }
  // Services beyond the two built-in ones are declared through COURIER_SERVICES.
  std::string services;
  for (const auto& [service, url] : options_.upstreams) {
    services += (services.empty() ? "" : ",") + service;
  }
  env.emplace_back("COURIER_SERVICES", services);
  for (const auto& kv : options_.env) env.push_back(kv);
  return env;
}

void Topology::start_broker(std::size_t index) {
  std::vector<std::string> args = {"--frontend", endpoint(frontend_ports_.at(index)),
                                   "--backend",  endpoint(backend_ports_.at(index)),
                                   "--id",       "test-broker-" + std::to_string(index + 1)};
  args.insert(args.end(), options_.broker_args.begin(), options_.broker_args.end());
  brokers_.at(index).reset();
  brokers_.at(index) = std::make_unique<ChildProcess>(COURIER_BROKER_BIN, args, environment());
}

ChildProcess& Topology::start_worker(const std::string& service, std::vector<std::string> args) {
  std::vector<std::string> all = {"--service", service,
                                  "--broker",  backends(),
                                  "--id",      service + "-" + std::to_string(workers_.size() + 1)};
  all.insert(all.end(), options_.worker_args.begin(), options_.worker_args.end());
  all.insert(all.end(), args.begin(), args.end());
  workers_.push_back(std::make_unique<ChildProcess>(COURIER_WORKER_BIN, all, environment()));
  return *workers_.back();
}

void Topology::start_gateway() {
  std::vector<std::string> args = {"--listen",       "127.0.0.1:" + std::to_string(gateway_port_),
                                   "--admin-listen", "127.0.0.1:" + std::to_string(admin_port_),
                                   "--threads",      std::to_string(options_.gateway_threads)};
  auto env = environment();
  if (options_.embedded_broker) {
    // Its frontend on the reserved port too, so that a test may add another gateway.
    args.insert(args.end(), {"--embedded-broker", "true"});
    env.emplace_back("COURIER_BROKER_FRONTEND", frontends());
    env.emplace_back("COURIER_BROKER_BACKEND", backends());
    env.emplace_back("COURIER_BROKER_ID", "test-broker-embedded");
  } else {
    args.insert(args.end(), {"--broker", frontends()});
  }
  args.insert(args.end(), options_.gateway_args.begin(), options_.gateway_args.end());
  gateway_ = std::make_unique<ChildProcess>(COURIER_GATEWAY_BIN, args, env);
}

bool Topology::wait_ready(std::chrono::milliseconds timeout) {
  return wait_until(
      [&] {
        const auto r =
            http_request(gateway_port_, "GET", "/readyz", {}, {}, std::chrono::milliseconds(500));
        return r.ok() && r.status == 200;
      },
      timeout, std::chrono::milliseconds(20));
}

bool Topology::wait_workers(const std::string& service, int count,
                            std::chrono::milliseconds timeout) {
  return wait_until(
      [&] {
        const auto r = admin("/services", {}, std::chrono::milliseconds(500));
        if (!r.ok() || r.status != 200) return false;
        const auto j = nlohmann::json::parse(r.body, nullptr, false);
        if (j.is_discarded()) return false;
        const auto& s = j["services"];
        return s.contains(service) && s[service].value("workers", 0) >= count;
      },
      timeout, std::chrono::milliseconds(20));
}

HttpResult Topology::get(const std::string& target, const HeaderList& headers,
                         std::chrono::milliseconds timeout) const {
  return http_request(gateway_port_, "GET", target, headers, {}, timeout);
}

HttpResult Topology::admin(const std::string& target, const HeaderList& headers,
                           std::chrono::milliseconds timeout) const {
  return http_request(admin_port_, "GET", target, headers, {}, timeout);
}

std::string Topology::logs() const {
  std::string out;
  const auto add = [&](const char* name, const std::unique_ptr<ChildProcess>& p) {
    if (!p) return;
    auto text = p->log_text();
    if (text.size() > 6000) text = "...\n" + text.substr(text.size() - 6000);
    out += std::string("===== ") + name + " =====\n" + text + "\n";
  };
  for (const auto& b : brokers_) add("broker", b);
  for (const auto& w : workers_) add("worker", w);
  add("gateway", gateway_);
  return out;
}

}  // namespace courier::testing
