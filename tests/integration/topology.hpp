// Starts the real Courier binaries (broker, workers, gateway) on loopback ports chosen at run
// time, for integration tests. Readiness is polled on the gateway's /readyz with a deadline.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/net.hpp"
#include "tests/support/process.hpp"

namespace courier::testing {

struct TopologyOptions {
  std::map<std::string, std::string> upstreams;  // service -> URL; becomes <SVC>_URL
  int workers_per_service = 1;
  EnvList env;  // extra environment for every process
  std::vector<std::string> broker_args;
  std::vector<std::string> worker_args;
  std::vector<std::string> gateway_args;
  bool start = true;  // false: the test starts the pieces itself
};

class Topology {
 public:
  explicit Topology(TopologyOptions options);
  ~Topology();

  void start_broker();
  ChildProcess& start_worker(const std::string& service, std::vector<std::string> args = {});
  void start_gateway();
  // Waits until /readyz answers 200 (broker connected, a worker for every configured service).
  bool wait_ready(std::chrono::milliseconds timeout = std::chrono::seconds(15));

  std::uint16_t gateway_port() const { return gateway_port_; }
  std::string frontend() const;
  std::string backend() const;
  ChildProcess& broker() { return *broker_; }
  ChildProcess& gateway() { return *gateway_; }
  std::vector<std::unique_ptr<ChildProcess>>& workers() { return workers_; }

  HttpResult get(const std::string& target, const HeaderList& headers = {},
                 std::chrono::milliseconds timeout = kDefaultClientTimeout) const;
  // Every process's log, for failure messages.
  std::string logs() const;

 private:
  EnvList environment() const;

  TopologyOptions options_;
  std::uint16_t frontend_port_;
  std::uint16_t backend_port_;
  std::uint16_t gateway_port_;
  std::unique_ptr<ChildProcess> broker_;
  std::unique_ptr<ChildProcess> gateway_;
  std::vector<std::unique_ptr<ChildProcess>> workers_;
};

}  // namespace courier::testing
