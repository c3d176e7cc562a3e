// The broker's ZAP (RFC 27) decisions: which CURVE public keys may complete a handshake on which
// socket ("gateways" frontend, "workers" backend), with counted and rate-limited denials.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker/now.hpp"
#include "common/curve.hpp"
#include "common/frames.hpp"

namespace courier::broker {

inline constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
inline constexpr const char* kGatewayDomain = "gateways";
inline constexpr const char* kWorkerDomain = "workers";

class ZapAuthenticator {
 public:
  // Admits exactly `keys` for handshakes on sockets whose zap_domain is `domain`.
  void allow(const std::string& domain, const std::vector<curve::NamedKey>& keys);

  // One ZAP request (the frames after the REQ envelope: version, request id, domain, address,
  // routing id, mechanism, credentials...) -> the reply frames (version, request id, status code,
  // status text, user id, metadata). Never throws: a request too broken to answer (no request
  // id) gives no frames; a malformed one that has an id gets status 400.
  protocol::Frames handle(const protocol::Frames& request, Clock::time_point now);

  std::uint64_t admitted(const std::string& domain) const;
  std::uint64_t denied(const std::string& domain) const;  // refused keys, per domain
  std::uint64_t malformed() const { return malformed_; }

 private:
  struct Domain {
    std::unordered_map<std::string, std::string> names;  // raw 32-byte key -> name
    std::uint64_t admitted = 0;
    std::uint64_t denied = 0;
    // Rate-limited warnings: the first denial at once, then one summary per period.
    std::uint64_t unreported = 0;
    Clock::time_point next_report{};
  };
  void deny_logged(const std::string& domain, Domain* d, const std::string& why,
                   Clock::time_point now);

  std::map<std::string, Domain> domains_;
  std::uint64_t malformed_ = 0;
  std::uint64_t malformed_unreported_ = 0;
  Clock::time_point next_malformed_report_{};
};

}  // namespace courier::broker
