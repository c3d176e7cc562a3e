#include "common/options.hpp"

#include <algorithm>

#include "common/config.hpp"

namespace courier {

std::string ComponentOption::setting() const {
  if (flag.empty()) return std::string(key) + " (" + std::string(env) + ")";
  return std::string(flag) + " (" + std::string(key) + ")";
}

std::chrono::milliseconds ComponentOption::default_seconds() const {
  return parse_seconds(setting(), default_text());
}

long long ComponentOption::default_integer() const {
  return parse_int(setting(), default_text(), min, max);
}

bool ComponentOption::default_bool() const { return parse_bool(setting(), default_text()); }

std::string ComponentOption::type_name() const {
  switch (kind) {
    case ValueKind::kSeconds:
      return "SECONDS";
    case ValueKind::kInteger:
      return "INT in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
    case ValueKind::kBoolean:
      return "BOOL";
    case ValueKind::kEndpoints:
      return "ENDPOINTS";
    case ValueKind::kHostPort:
      return "HOST:PORT";
    case ValueKind::kText:
      break;
  }
  return "TEXT";
}

std::string host_of(std::string_view host_port) {
  auto host = host_port.substr(0, host_port.rfind(':'));
  if (host.size() > 1 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return std::string(host);
}

std::uint16_t port_of(std::string_view host_port) {
  const auto colon = host_port.rfind(':');
  return static_cast<std::uint16_t>(
      parse_int(std::string(host_port), std::string(host_port.substr(colon + 1)), 0, 65535));
}

bool known_component_key(std::string_view key) {
  return std::any_of(std::begin(options::kAll), std::end(options::kAll),
                     [&](const ComponentOption* o) { return o->key == key; });
}

}  // namespace courier
