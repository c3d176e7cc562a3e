#include "broker/zap_authenticator.hpp"

#include <spdlog/spdlog.h>

#include <chrono>

namespace courier::broker {

namespace {

constexpr auto kReportPeriod = std::chrono::seconds(10);

std::string text_of(const zmq::message_t& m) { return std::string(m.to_string_view()); }

// Printable for a log line, whatever a hostile peer put there.
std::string printable(std::string_view s, std::size_t max = 64) {
  std::string out;
  for (char c : s.substr(0, max)) {
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  if (s.size() > max) out += "...";
  return out;
}

protocol::Frames reply(const zmq::message_t& request_id, const char* code, const char* text,
                       const std::string& user_id) {
  protocol::Frames out;
  out.emplace_back(std::string_view("1.0"));
  out.emplace_back(request_id.data(), request_id.size());
  out.emplace_back(std::string_view(code));
  out.emplace_back(std::string_view(text));
  out.emplace_back(std::string_view(user_id));
  out.emplace_back();  // metadata: none
  return out;
}

}  // namespace

void ZapAuthenticator::allow(const std::string& domain, const std::vector<curve::NamedKey>& keys) {
  auto& d = domains_[domain];
  for (const auto& k : keys) {
    if (auto raw = curve::decode(k.key)) d.names[*raw] = k.name;
  }
}

std::uint64_t ZapAuthenticator::admitted(const std::string& domain) const {
  const auto it = domains_.find(domain);
  return it == domains_.end() ? 0 : it->second.admitted;
}

std::uint64_t ZapAuthenticator::denied(const std::string& domain) const {
  const auto it = domains_.find(domain);
  return it == domains_.end() ? 0 : it->second.denied;
}

void ZapAuthenticator::deny_logged(const std::string& domain, Domain* d, const std::string& why,
                                   Clock::time_point now) {
  if (d) ++d->denied;
  auto& unreported = d ? d->unreported : malformed_unreported_;
  auto& next = d ? d->next_report : next_malformed_report_;
  if (now < next) {
    ++unreported;
    return;
  }
  if (unreported > 0) {
    spdlog::warn("CURVE handshake denied on {}: {} ({} more denied in the last {} s)", domain, why,
                 unreported,
                 std::chrono::duration_cast<std::chrono::seconds>(kReportPeriod).count());
  } else {
    spdlog::warn("CURVE handshake denied on {}: {}", domain, why);
  }
  unreported = 0;
  next = now + kReportPeriod;
}

protocol::Frames ZapAuthenticator::handle(const protocol::Frames& request, Clock::time_point now) {
  try {
    if (request.size() < 2) {
      ++malformed_;
      deny_logged("zap", nullptr, "malformed ZAP request without a request id", now);
      return {};
    }
    const auto& request_id = request[1];
    if (request.size() < 6 || request[0].to_string_view() != "1.0") {
      ++malformed_;
      deny_logged("zap", nullptr, "malformed ZAP request", now);
      return reply(request_id, "400", "malformed request", "");
    }
    const auto domain_name = text_of(request[2]);
    const auto address = printable(request[3].to_string_view());
    const auto mechanism = request[5].to_string_view();
    const auto it = domains_.find(domain_name);
    Domain* domain = it == domains_.end() ? nullptr : &it->second;
    const auto label = domain ? domain_name : "unknown domain '" + printable(domain_name) + "'";
    if (!domain) {
      ++malformed_;
      deny_logged(label, nullptr, "from " + address, now);
      return reply(request_id, "400", "unknown domain", "");
    }
    if (mechanism != "CURVE" || request.size() != 7 || request[6].size() != curve::kKeyBytes) {
      deny_logged(label, domain, "mechanism '" + printable(mechanism) + "' from " + address, now);
      return reply(request_id, "400", "CURVE required", "");
    }
    const std::string key(static_cast<const char*>(request[6].data()), request[6].size());
    const auto name = domain->names.find(key);
    if (name == domain->names.end()) {
      deny_logged(
          label, domain,
          "key " + curve::encode(key).value_or("?") + " is not authorized (from " + address + ")",
          now);
      return reply(request_id, "400", "key not authorized", "");
    }
    ++domain->admitted;
    spdlog::debug("CURVE handshake on {}: admitted {} from {}", domain_name, name->second, address);
    return reply(request_id, "200", "OK", name->second);
  } catch (const std::exception& e) {
    // Only allocation can throw above; whatever it was, the handshake is refused.
    ++malformed_;
    spdlog::error("ZAP request failed: {}", e.what());
    if (request.size() >= 2) {
      try {
        return reply(request[1], "500", "internal error", "");
      } catch (...) {
      }
    }
    return {};
  }
}

}  // namespace courier::broker
