#include "common/envelope.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <msgpack.hpp>

namespace courier {
namespace {

class EnvelopeCategory : public std::error_category {
 public:
  const char* name() const noexcept override { return "courier.envelope"; }
  std::string message(int ev) const override {
    switch (static_cast<EnvelopeError>(ev)) {
      case EnvelopeError::kMalformed:
        return "malformed envelope";
      case EnvelopeError::kTooLarge:
        return "envelope field too large";
      case EnvelopeError::kWrongType:
        return "envelope field of the wrong type";
      case EnvelopeError::kBadVersion:
        return "unsupported envelope version";
      case EnvelopeError::kBadValue:
        return "invalid envelope field value";
    }
    return "unknown envelope error";
  }
};

using Packer = msgpack::packer<msgpack::sbuffer>;

void pack_str(Packer& p, std::string_view s) {
  p.pack_str(static_cast<std::uint32_t>(s.size()));
  p.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
}

void pack_bin(Packer& p, std::string_view s) {
  p.pack_bin(static_cast<std::uint32_t>(s.size()));
  p.pack_bin_body(s.data(), static_cast<std::uint32_t>(s.size()));
}

void pack_headers(Packer& p, const Headers& headers) {
  p.pack_array(static_cast<std::uint32_t>(headers.size()));
  for (const auto& h : headers) {
    p.pack_array(2);
    pack_str(p, h.name);
    pack_bin(p, h.value);  // header values may carry any octet (obs-text)
  }
}

// Hands the sbuffer's allocation to ZeroMQ without copying it.
zmq::message_t to_message(msgpack::sbuffer& buf) {
  const std::size_t size = buf.size();
  char* data = buf.release();
  return zmq::message_t(
      data, size, [](void* d, void*) { std::free(d); }, nullptr);
}

// Reading side: each getter validates the type and returns false on mismatch.
struct Reader {
  const msgpack::object* items;
  std::uint32_t size;

  bool str(std::uint32_t i, std::string& out, std::size_t max) const {
    const auto& o = items[i];
    if (o.type != msgpack::type::STR && o.type != msgpack::type::BIN) return false;
    const std::uint32_t n = o.type == msgpack::type::STR ? o.via.str.size : o.via.bin.size;
    const char* p = o.type == msgpack::type::STR ? o.via.str.ptr : o.via.bin.ptr;
    if (n > max) return false;
    out.assign(p, n);
    return true;
  }
  bool uint(std::uint32_t i, std::uint64_t& out) const {
    const auto& o = items[i];
    if (o.type != msgpack::type::POSITIVE_INTEGER) return false;
    out = o.via.u64;
    return true;
  }
  bool id(std::uint32_t i, protocol::CorrelationId& out) const {
    const auto& o = items[i];
    if (o.type != msgpack::type::BIN || o.via.bin.size != out.size()) return false;
    std::memcpy(out.data(), o.via.bin.ptr, out.size());
    return true;
  }
  bool headers(std::uint32_t i, Headers& out) const {
    const auto& o = items[i];
    if (o.type != msgpack::type::ARRAY || o.via.array.size > kMaxEnvelopeHeaders) return false;
    out.clear();
    out.reserve(o.via.array.size);
    for (std::uint32_t k = 0; k < o.via.array.size; ++k) {
      const auto& pair = o.via.array.ptr[k];
      if (pair.type != msgpack::type::ARRAY || pair.via.array.size != 2) return false;
      Reader r{pair.via.array.ptr, 2};
      Header h;
      if (!r.str(0, h.name, 8192) || !r.str(1, h.value, 65536) || h.name.empty()) return false;
      out.push_back(std::move(h));
    }
    return true;
  }
};

// RFC 9110 5.6.2.
bool is_token(std::string_view s) {
  static constexpr std::string_view kSymbols = "!#$%&'*+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') ||
           kSymbols.find(c) != kSymbols.npos;
  });
}

bool has_control(std::string_view s, bool allow_tab) {
  return std::any_of(s.begin(), s.end(), [allow_tab](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && !(allow_tab && u == '\t')) || u == 0x7f;
  });
}

// What a worker turns into a request line and header lines: nothing in it may end a line early
// (CR, LF, NUL) or split the request line (whitespace in method or target). The gateway never
// produces such a request; a frame that carries one is forged.
bool sendable(const RequestEnvelope& r) {
  if (!is_token(r.method)) return false;
  if (has_control(r.target, false) || r.target.find(' ') != std::string::npos) return false;
  if (has_control(r.request_id, false) || has_control(r.service, false)) return false;
  return std::all_of(r.headers.begin(), r.headers.end(), [](const Header& h) {
    return is_token(h.name) &&
           h.value.find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos;
  });
}

// Unpacks `data` as one msgpack array of exactly `n` elements whose first is the version.
std::error_code open(std::string_view data, std::uint32_t n, msgpack::object_handle& handle,
                     Reader& reader) {
  if (data.size() > kMaxEnvelopeBody + (1u << 20)) return EnvelopeError::kTooLarge;
  try {
    std::size_t offset = 0;
    // Limits keep hostile input from allocating without bound: a few nested levels of small arrays.
    const msgpack::unpack_limit limit(/*array=*/kMaxEnvelopeHeaders + 16, /*map=*/0,
                                      /*str=*/kMaxEnvelopeBody, /*bin=*/kMaxEnvelopeBody,
                                      /*ext=*/0, /*depth=*/4);
    handle = msgpack::unpack(data.data(), data.size(), offset, nullptr, nullptr, limit);
    if (offset != data.size()) return EnvelopeError::kMalformed;
  } catch (const msgpack::size_overflow&) {
    return EnvelopeError::kTooLarge;
  } catch (const std::bad_alloc&) {
    return EnvelopeError::kTooLarge;
  } catch (const std::exception&) {
    return EnvelopeError::kMalformed;
  }
  const msgpack::object& root = handle.get();
  if (root.type != msgpack::type::ARRAY || root.via.array.size < 1)
    return EnvelopeError::kWrongType;
  reader = Reader{root.via.array.ptr, root.via.array.size};
  std::uint64_t version = 0;
  if (!reader.uint(0, version)) return EnvelopeError::kWrongType;
  if (version != protocol::kEnvelopeVersion) return EnvelopeError::kBadVersion;
  if (root.via.array.size != n) return EnvelopeError::kWrongType;
  return {};
}

}  // namespace

const std::error_category& envelope_category() {
  static const EnvelopeCategory category;
  return category;
}

std::error_code make_error_code(EnvelopeError e) {
  return {static_cast<int>(e), envelope_category()};
}

zmq::message_t encode(const RequestEnvelope& r) {
  msgpack::sbuffer buf(256 + r.body.size() + r.target.size());
  Packer p(buf);
  p.pack_array(10);
  p.pack_uint8(protocol::kEnvelopeVersion);
  pack_bin(p, {reinterpret_cast<const char*>(r.id.data()), r.id.size()});
  pack_str(p, r.service);
  pack_str(p, r.method);
  pack_bin(p, r.target);
  pack_headers(p, r.headers);
  pack_bin(p, r.body);
  p.pack_uint64(r.deadline_ms);
  p.pack_uint32(r.attempt);
  pack_str(p, r.request_id);
  return to_message(buf);
}

zmq::message_t encode(const ReplyEnvelope& r) {
  msgpack::sbuffer buf(256 + r.body.size());
  Packer p(buf);
  p.pack_array(9);
  p.pack_uint8(protocol::kEnvelopeVersion);
  pack_bin(p, {reinterpret_cast<const char*>(r.id.data()), r.id.size()});
  p.pack_uint16(r.status);
  pack_headers(p, r.headers);
  pack_bin(p, r.body);
  if (r.error) {
    p.pack_array(3);
    pack_str(p, r.error->code);
    pack_str(p, r.error->message);
    pack_str(p, r.error->detail);
  } else {
    p.pack_nil();
  }
  p.pack_uint32(r.attempts);
  pack_str(p, r.worker_id);
  p.pack_uint64(r.upstream_us);
  return to_message(buf);
}

std::error_code decode(std::string_view data, RequestEnvelope& out) {
  msgpack::object_handle handle;
  Reader r{};
  if (auto ec = open(data, 10, handle, r)) return ec;
  std::uint64_t deadline = 0, attempt = 0;
  if (!r.id(1, out.id) || !r.str(2, out.service, protocol::kMaxServiceNameSize) ||
      !r.str(3, out.method, 64) || !r.str(4, out.target, 1u << 20) || !r.headers(5, out.headers) ||
      !r.str(6, out.body, kMaxEnvelopeBody) || !r.uint(7, deadline) || !r.uint(8, attempt) ||
      !r.str(9, out.request_id, 256)) {
    return EnvelopeError::kWrongType;
  }
  if (out.method.empty() || attempt > 1000 || !sendable(out)) return EnvelopeError::kBadValue;
  out.deadline_ms = deadline;
  out.attempt = static_cast<std::uint32_t>(attempt);
  return {};
}

std::error_code decode(std::string_view data, ReplyEnvelope& out) {
  msgpack::object_handle handle;
  Reader r{};
  if (auto ec = open(data, 9, handle, r)) return ec;
  std::uint64_t status = 0, attempts = 0, upstream_us = 0;
  if (!r.id(1, out.id) || !r.uint(2, status) || !r.headers(3, out.headers) ||
      !r.str(4, out.body, kMaxEnvelopeBody) || !r.uint(6, attempts) ||
      !r.str(7, out.worker_id, protocol::kMaxWorkerIdSize) || !r.uint(8, upstream_us)) {
    return EnvelopeError::kWrongType;
  }
  if (status < 100 || status > 999 || attempts > 1000) return EnvelopeError::kBadValue;
  const auto& err = r.items[5];
  if (err.type == msgpack::type::NIL) {
    out.error.reset();
  } else if (err.type == msgpack::type::ARRAY && err.via.array.size == 3) {
    Reader e{err.via.array.ptr, 3};
    ErrorInfo info;
    if (!e.str(0, info.code, 64) || !e.str(1, info.message, 4096) || !e.str(2, info.detail, 4096)) {
      return EnvelopeError::kWrongType;
    }
    out.error = std::move(info);
  } else {
    return EnvelopeError::kWrongType;
  }
  out.status = static_cast<std::uint16_t>(status);
  out.attempts = static_cast<std::uint32_t>(attempts);
  out.upstream_us = upstream_us;
  return {};
}

}  // namespace courier
