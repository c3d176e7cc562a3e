#include "common/trace_context.hpp"

#include <algorithm>
#include <set>

#include "common/ids.hpp"

namespace courier::trace {
namespace {

bool lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool all_zero(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == '0'; });
}

std::uint8_t hex_byte(std::string_view two) {
  const auto digit = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  return static_cast<std::uint8_t>(digit(two[0]) * 16 + digit(two[1]));
}

bool lcalpha(char c) { return c >= 'a' && c <= 'z'; }
bool digit(char c) { return c >= '0' && c <= '9'; }
bool key_char(char c) {
  return lcalpha(c) || digit(c) || c == '_' || c == '-' || c == '*' || c == '/';
}
bool value_char(char c) { return c >= 0x20 && c <= 0x7e && c != ',' && c != '='; }

bool valid_key(std::string_view key) {
  const auto at = key.find('@');
  if (at == std::string_view::npos) {
    return !key.empty() && key.size() <= 256 && lcalpha(key[0]) &&
           std::all_of(key.begin(), key.end(), key_char);
  }
  const auto tenant = key.substr(0, at);
  const auto system = key.substr(at + 1);
  return !tenant.empty() && tenant.size() <= 241 && (lcalpha(tenant[0]) || digit(tenant[0])) &&
         std::all_of(tenant.begin(), tenant.end(), key_char) && !system.empty() &&
         system.size() <= 14 && lcalpha(system[0]) &&
         std::all_of(system.begin(), system.end(), key_char);
}

bool valid_value(std::string_view value) {
  return !value.empty() && value.size() <= 256 && value.back() != ' ' &&
         std::all_of(value.begin(), value.end(), value_char);
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::optional<Traceparent> parse_traceparent(std::string_view value) {
  if (value.size() < kTraceparentLength) return std::nullopt;
  const auto version = value.substr(0, 2);
  if (!lower_hex(version) || version == "ff") return std::nullopt;
  if (version == "00" && value.size() != kTraceparentLength) return std::nullopt;
  // A later version may append fields: only a '-' may follow what version 00 defines.
  if (value.size() > kTraceparentLength && value[kTraceparentLength] != '-') return std::nullopt;
  if (value[2] != '-' || value[35] != '-' || value[52] != '-') return std::nullopt;
  const auto trace_id = value.substr(3, 32);
  const auto parent_id = value.substr(36, 16);
  const auto flags = value.substr(53, 2);
  if (!lower_hex(trace_id) || all_zero(trace_id)) return std::nullopt;
  if (!lower_hex(parent_id) || all_zero(parent_id)) return std::nullopt;
  if (!lower_hex(flags)) return std::nullopt;
  return Traceparent{hex_byte(version), std::string(trace_id), std::string(parent_id),
                     hex_byte(flags)};
}

std::string format_traceparent(const Traceparent& tp) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "00-";
  out += tp.trace_id;
  out += '-';
  out += tp.parent_id;
  out += '-';
  out += kHex[tp.flags >> 4];
  out += kHex[tp.flags & 15];
  return out;
}

bool valid_tracestate(std::string_view value) {
  if (value.size() > kMaxTracestateLength) return false;
  std::set<std::string_view> keys;
  std::size_t members = 0;
  while (true) {
    const auto comma = value.find(',');
    const auto member = trim_ows(value.substr(0, comma));
    if (!member.empty()) {  // empty members are allowed and do not count
      const auto eq = member.find('=');
      if (eq == std::string_view::npos) return false;
      const auto key = member.substr(0, eq);
      if (!valid_key(key) || !valid_value(member.substr(eq + 1))) return false;
      if (!keys.insert(key).second) return false;  // a key appears once at most
      if (++members > kMaxTracestateMembers) return false;
    }
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return true;
}

FreshIds FreshIds::random() {
  FreshIds ids;
  // All zero is invalid; with 2^-64 odds per draw, drawing again costs nothing.
  do {
    random_bytes(ids.trace);
  } while (std::all_of(ids.trace.begin(), ids.trace.end(), [](auto b) { return b == 0; }));
  do {
    random_bytes(ids.span);
  } while (std::all_of(ids.span.begin(), ids.span.end(), [](auto b) { return b == 0; }));
  return ids;
}

Context next_hop(const std::vector<std::string_view>& traceparents,
                 const std::vector<std::string_view>& tracestates, const FreshIds& fresh) {
  Context out;
  std::optional<Traceparent> caller;
  // Several traceparent headers cannot be told apart: none of them is believed.
  if (traceparents.size() == 1) caller = parse_traceparent(traceparents.front());
  Traceparent next;
  next.parent_id = to_hex(fresh.span);
  if (caller) {
    next.trace_id = std::move(caller->trace_id);
    next.flags = caller->flags;
    out.continued = true;
    std::string joined;
    for (const auto& s : tracestates) {
      if (!joined.empty()) joined += ',';
      joined.append(s);
      if (joined.size() > kMaxTracestateLength) break;
    }
    if (!joined.empty() && valid_tracestate(joined)) out.tracestate = std::move(joined);
  } else {
    next.trace_id = to_hex(fresh.trace);
  }
  out.trace_id = next.trace_id;
  out.traceparent = format_traceparent(next);
  return out;
}

std::string trace_id_of(std::string_view traceparent) {
  auto tp = parse_traceparent(traceparent);
  return tp ? std::move(tp->trace_id) : std::string();
}

}  // namespace courier::trace
