// Header rules shared by gateway and workers: which headers are hop-by-hop (RFC 9110 7.6.1)
// and so never forwarded, what a valid field is, and which methods are idempotent (safe to send
// twice).
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

// RFC 9110 5.6.2: 1*tchar, what a field name (and a method) must be.
bool is_token(std::string_view s);
// RFC 9110 5.5: no control character (CR, LF, NUL and the other CTLs, DEL) but HTAB; obs-text
// (bytes 0x80-0xff) is allowed. What a field value must be to be written as it is.
bool is_field_value(std::string_view s);
// Equal ignoring case and with '_' taken for '-': "X_Courier_Subject" is like "x-courier-subject".
// Many frameworks (CGI, WSGI, PHP, Rack) see both as the same variable, HTTP_X_COURIER_SUBJECT.
bool loosely_equal(std::string_view a, std::string_view b);
// True if `name` starts with `prefix` in the sense of loosely_equal.
bool loosely_starts_with(std::string_view name, std::string_view prefix);

bool is_idempotent_method(std::string_view method);
// Idempotent, or carries an Idempotency-Key: a second attempt cannot do harm. The one retry-safety
// decision of Courier: the gateway's flag and the worker's upstream retries both come from it
// (who uses it for what: common/frames.hpp, request_flags).
bool is_retry_safe(std::string_view method, const Headers& headers);

}  // namespace courier
