// Header rules shared by gateway and workers: which headers are hop-by-hop (RFC 9110 7.6.1)
// and so never forwarded, and which methods are idempotent (safe to send twice).
#pragma once

#include <string_view>

#include "common/envelope.hpp"

namespace courier {

bool iequals(std::string_view a, std::string_view b);

// Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade,
// Proxy-Authenticate, Proxy-Authorization; plus Host and Content-Length, which each hop sets.
bool is_hop_by_hop(std::string_view name);

// Removes hop-by-hop headers and every header the Connection header names, keeping the order.
// One pass over the headers, each checked against the Connection values (usually one short
// list). Pass an rvalue to filter in place.
Headers end_to_end(Headers headers);

const Header* find_header(const Headers& headers, std::string_view name);

bool is_idempotent_method(std::string_view method);
// Idempotent, or carries an Idempotency-Key: a second attempt cannot do harm. The one retry-safety
// decision of Courier: the gateway's flag and the worker's upstream retries both come from it
// (who uses it for what: common/frames.hpp, request_flags).
bool is_retry_safe(std::string_view method, const Headers& headers);

}  // namespace courier
