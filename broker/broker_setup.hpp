// What the broker binary and a gateway with an embedded broker share: the broker's options read
// from the broker.* settings, and its admin listener (/metrics, /healthz, /readyz).
#pragma once

#include <memory>
#include <string>

#include "broker/broker.hpp"
#include "common/admin_http.hpp"
#include "common/cli.hpp"
#include "common/config.hpp"

namespace courier::broker {

// The broker.* options from flags, --set, env and the file, checked (CURVE: all three files or
// none; broker.services). Endpoints are not checked here: the caller may still change them, and
// check_plain_endpoints() or the Broker do it. Throws ConfigError.
BrokerOptions load_broker_options(const OptionFlags& flags, const ConfigFile& file,
                                  const Settings& settings);

// The admin listener on `listen` for `broker` (bound now; serving once start() is called), or
// null when `listen` is empty. `broker` must outlive it.
std::unique_ptr<AdminHttpServer> make_admin(const Broker& broker, const std::string& listen);

// Logs that the broker accepts workers for any service, or for how many declared ones.
void log_declared_services(const BrokerOptions& options);

}  // namespace courier::broker
