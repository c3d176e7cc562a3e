#include "common/curve.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <system_error>

#include "common/config.hpp"

namespace courier::curve {

namespace {

namespace fs = std::filesystem;

std::string_view trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

// The meaningful lines of a key file, with their numbers.
std::vector<std::pair<int, std::string_view>> content_lines(std::string_view text) {
  std::vector<std::pair<int, std::string_view>> out;
  int number = 0;
  while (!text.empty() || number == 0) {
    ++number;
    const auto end = text.find('\n');
    const auto line = trim(text.substr(0, end));
    text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
    // '#' is a z85 character, but never the first of a key: a 32-bit group's first digit is at
    // most 82 (2^32 / 85^4), and '#' is digit 84.
    if (!line.empty() && line.front() != '#') out.emplace_back(number, line);
    if (text.empty()) break;
  }
  return out;
}

ConfigError line_error(const std::string& source, int line, const std::string& why) {
  return ConfigError(source + ":" + std::to_string(line) + ": " + why);
}

bool valid_name(std::string_view name) {
  return !name.empty() && name.size() <= 64 &&
         std::all_of(name.begin(), name.end(), [](unsigned char c) {
           return std::isalnum(c) || c == '.' || c == '_' || c == '-' || c == '@' || c == ':';
         });
}

// "KEY [NAME]" on one line.
NamedKey parse_key_line(std::string_view line, int number, const std::string& source,
                        const std::string& default_name) {
  const auto space = line.find_first_of(" \t");
  const auto key = line.substr(0, space);
  const auto name = space == std::string_view::npos ? std::string_view{} : trim(line.substr(space));
  if (!is_key(key)) {
    throw line_error(source, number,
                     "not a CURVE public key (40 z85 characters, optionally followed by a name)");
  }
  if (!name.empty() && !valid_name(name)) {
    throw line_error(source, number,
                     "the name after the key must be 1-64 characters of A-Z a-z 0-9 . _ - @ :");
  }
  NamedKey out{std::string(key), std::string(name)};
  if (out.name.empty()) {
    out.name = valid_name(default_name) ? default_name : "key-" + out.key.substr(0, 8);
  }
  return out;
}

std::string read_file(const std::string& setting, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(setting + ": " + path + " cannot be read");
  std::string text(std::istreambuf_iterator<char>(in), {});
  if (text.size() > (1u << 20)) throw ConfigError(setting + ": " + path + " is larger than 1 MiB");
  return text;
}

void write_file(const fs::path& path, const std::string& text, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    throw std::system_error(errno, std::generic_category(), "cannot create " + path.string());
  }
  const auto* p = text.data();
  std::size_t left = text.size();
  while (left > 0) {
    const auto n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      throw std::system_error(err, std::generic_category(), "cannot write " + path.string());
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  // The umask may have taken bits away; never added any.
  ::fchmod(fd, mode);
  ::close(fd);
}

}  // namespace

bool available() { return zmq_has("curve") != 0; }

KeyPair generate() {
  char pub[kKeyText + 1] = {};
  char sec[kKeyText + 1] = {};
  if (zmq_curve_keypair(pub, sec) != 0) {
    throw std::runtime_error(std::string("cannot generate a CURVE key pair: ") +
                             zmq_strerror(zmq_errno()));
  }
  return {pub, sec};
}

std::optional<std::string> decode(std::string_view text) {
  if (text.size() != kKeyText) return std::nullopt;
  // zmq_z85_decode wants a terminated string and accepts characters outside the alphabet.
  static constexpr std::string_view kZ85 =
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
  if (text.find_first_not_of(kZ85) != std::string_view::npos) return std::nullopt;
  const std::string z(text);
  std::string raw(kKeyBytes, '\0');
  if (!zmq_z85_decode(reinterpret_cast<std::uint8_t*>(raw.data()), z.c_str())) return std::nullopt;
  // z85 has 85^5 > 2^32 values per group: text that overflows is not a key's encoding.
  if (encode(raw) != z) return std::nullopt;
  return raw;
}

std::optional<std::string> encode(std::string_view raw) {
  if (raw.size() != kKeyBytes) return std::nullopt;
  char out[kKeyText + 1] = {};
  if (!zmq_z85_encode(out, reinterpret_cast<const std::uint8_t*>(raw.data()), raw.size())) {
    return std::nullopt;
  }
  return std::string(out);
}

bool is_key(std::string_view text) { return decode(text).has_value(); }

std::optional<std::string> public_of(std::string_view secret) {
  if (!is_key(secret)) return std::nullopt;
  const std::string s(secret);
  char pub[kKeyText + 1] = {};
  if (zmq_curve_public(pub, s.c_str()) != 0) return std::nullopt;
  return std::string(pub);
}

KeyPair parse_secret_key(std::string_view text, const std::string& source) {
  const auto lines = content_lines(text);
  if (lines.empty()) throw ConfigError(source + ": no CURVE secret key in it");
  if (lines.size() > 1) {
    throw line_error(source, lines[1].first, "a secret key file holds one key only");
  }
  const auto [number, line] = lines.front();
  auto pub = public_of(line);
  if (!pub) throw line_error(source, number, "not a CURVE secret key (40 z85 characters)");
  return {std::move(*pub), std::string(line)};
}

std::vector<NamedKey> parse_authorized(std::string_view text, const std::string& source,
                                       const std::string& default_name) {
  std::vector<NamedKey> out;
  std::set<std::string> seen;
  for (const auto& [number, line] : content_lines(text)) {
    auto key = parse_key_line(line, number, source, default_name);
    if (!seen.insert(key.key).second) throw line_error(source, number, "key listed twice");
    out.push_back(std::move(key));
  }
  return out;
}

NamedKey parse_public_key(std::string_view text, const std::string& source) {
  const auto lines = content_lines(text);
  if (lines.empty()) throw ConfigError(source + ": no CURVE public key in it");
  if (lines.size() > 1) {
    throw line_error(source, lines[1].first, "a public key file holds one key only");
  }
  return parse_key_line(lines.front().second, lines.front().first, source, "");
}

KeyPair load_secret_key(const std::string& setting, const std::string& path) {
  auto keys = parse_secret_key(read_file(setting, path), setting + ": " + path);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO))) {
    spdlog::warn("CURVE secret key file {} is readable by group or others (mode {:o}): chmod 600",
                 path, st.st_mode & 0777);
  }
  return keys;
}

std::string load_public_key(const std::string& setting, const std::string& path) {
  return parse_public_key(read_file(setting, path), setting + ": " + path).key;
}

std::vector<NamedKey> load_authorized(const std::string& setting, const std::string& path) {
  std::vector<NamedKey> out;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      if (entry.path().extension() == ".pub") files.push_back(entry.path());
    }
    if (ec) throw ConfigError(setting + ": cannot list " + path + ": " + ec.message());
    std::sort(files.begin(), files.end());
    std::set<std::string> seen;
    for (const auto& file : files) {
      for (auto& key : parse_authorized(read_file(setting, file.string()),
                                        setting + ": " + file.string(), file.stem().string())) {
        if (!seen.insert(key.key).second) {
          throw ConfigError(setting + ": " + file.string() + ": key " + key.key +
                            " is listed in another file too");
        }
        out.push_back(std::move(key));
      }
    }
  } else {
    out = parse_authorized(read_file(setting, path), setting + ": " + path);
  }
  if (out.empty()) {
    throw ConfigError(setting + ": " + path + " lists no key: no peer could connect");
  }
  return out;
}

std::string secret_file_text(const KeyPair& keys, const std::string& name) {
  return "# Courier CURVE secret key of " + name + " (public key " + keys.public_key +
         "). Keep it private.\n" + keys.secret_key + "\n";
}

std::string public_file_text(const NamedKey& key) { return key.key + " " + key.name + "\n"; }

KeyPair write_key_pair(const std::string& dir, const std::string& name, bool force) {
  if (!valid_name(name) || name.find(':') != std::string::npos) {
    throw std::invalid_argument("key name '" + name +
                                "' must be 1-64 characters of A-Z a-z 0-9 . _ - @");
  }
  const fs::path base(dir);
  fs::create_directories(base);
  const auto secret = base / (name + ".key");
  const auto pub = base / (name + ".pub");
  if (force) {
    fs::remove(secret);
    fs::remove(pub);
  }
  const auto keys = generate();
  write_file(secret, secret_file_text(keys, name), 0600);
  write_file(pub, public_file_text({keys.public_key, name}), 0644);
  return keys;
}

std::vector<std::string> init_key_dir(const std::string& dir) {
  const fs::path base(dir);
  fs::create_directories(base);
  std::vector<std::string> created;
  for (const char* name : {"broker", "gateway", "worker"}) {
    const auto secret = base / (std::string(name) + ".key");
    if (fs::exists(secret)) continue;
    write_key_pair(dir, name, /*force=*/true);  // a .pub without its .key is stale
    created.push_back(secret.string());
    created.push_back((base / (std::string(name) + ".pub")).string());
  }
  for (const auto& [list, name] :
       {std::pair{"gateways.authorized", "gateway"}, std::pair{"workers.authorized", "worker"}}) {
    const auto path = base / list;
    if (fs::exists(path)) continue;
    const auto pub = base / (std::string(name) + ".pub");
    const auto key = parse_public_key(read_file(list, pub.string()), pub.string());
    write_file(path,
               std::string("# Public keys allowed on the broker's ") +
                   (std::string(name) == "gateway" ? "frontend" : "backend") +
                   ", one `KEY NAME` per line.\n" + public_file_text(key),
               0644);
    created.push_back(path.string());
  }
  return created;
}

void apply_client(zmq::socket_t& socket, const ClientKeys& keys) {
  const auto set = [&](int option, const std::string& z85) {
    const auto raw = decode(z85);
    if (!raw) throw std::invalid_argument("not a CURVE key");
    if (zmq_setsockopt(socket.handle(), option, raw->data(), raw->size()) != 0) {
      throw zmq::error_t();
    }
  };
  set(ZMQ_CURVE_SERVERKEY, keys.server_key);
  set(ZMQ_CURVE_PUBLICKEY, keys.own.public_key);
  set(ZMQ_CURVE_SECRETKEY, keys.own.secret_key);
}

std::optional<ClientKeys> load_client_keys(const std::string& secret_setting,
                                           const std::string& secret_path,
                                           const std::string& server_setting,
                                           const std::string& server_path) {
  if (secret_path.empty() && server_path.empty()) return std::nullopt;
  if (secret_path.empty() || server_path.empty()) {
    throw ConfigError("CURVE needs both " + secret_setting + " and " + server_setting + " (only " +
                      (secret_path.empty() ? server_setting : secret_setting) + " is set)");
  }
  if (!available()) {
    throw ConfigError(secret_setting + ": this libzmq was built without CURVE support");
  }
  return ClientKeys{load_secret_key(secret_setting, secret_path),
                    load_public_key(server_setting, server_path)};
}

bool is_loopback_endpoint(std::string_view endpoint) {
  if (endpoint.starts_with("ipc://") || endpoint.starts_with("inproc://")) return true;
  if (!endpoint.starts_with("tcp://")) return false;
  auto host = endpoint.substr(6);
  if (host.starts_with("[")) {
    return host.starts_with("[::1]:");
  }
  host = host.substr(0, host.rfind(':'));
  if (host == "localhost") return true;
  // 127.0.0.0/8, written as four decimal numbers.
  if (!host.starts_with("127.")) return false;
  int dots = 0;
  for (char c : host) {
    if (c == '.') {
      ++dots;
    } else if (c < '0' || c > '9') {
      return false;
    }
  }
  return dots == 3;
}

}  // namespace courier::curve
