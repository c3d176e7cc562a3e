// ZeroMQ CURVE keys for the broker links: z85 key files (strict parsers that name file and line),
// key generation for courier-keys, the client side of a link, and the loopback test.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

namespace courier::curve {

inline constexpr std::size_t kKeyText = 40;   // z85 characters of one key
inline constexpr std::size_t kKeyBytes = 32;  // decoded

// libzmq was built with CURVE (libsodium).
bool available();

struct KeyPair {
  std::string public_key;  // z85
  std::string secret_key;  // z85
};
KeyPair generate();

// 40 z85 characters that decode to a key.
bool is_key(std::string_view text);
// The 32 raw bytes of a z85 key; nullopt when `text` is not one.
std::optional<std::string> decode(std::string_view text);
// The z85 text of 32 raw bytes; nullopt when `raw` is not 32 bytes.
std::optional<std::string> encode(std::string_view raw);
// The public key that belongs to a z85 secret key; nullopt when `secret` is not a key.
std::optional<std::string> public_of(std::string_view secret);

struct NamedKey {
  std::string key;   // z85 public key
  std::string name;  // what the broker logs and the ZAP User-Id carry
};

// Parsers of the key files. Blank lines and lines starting with '#' are skipped, surrounding
// whitespace ignored. Errors throw ConfigError "SOURCE:LINE: why". `source` names the file.
//
// A secret key file: exactly one line, the z85 secret key.
KeyPair parse_secret_key(std::string_view text, const std::string& source);
// An authorized-keys file: one `KEY [NAME]` per line; NAME is [A-Za-z0-9._@:-], at most 64
// characters, and defaults to `default_name` (if not empty) or "key-" and the key's first 8
// characters. A key listed twice is an error.
std::vector<NamedKey> parse_authorized(std::string_view text, const std::string& source,
                                       const std::string& default_name = "");
// A public key file (NAME.pub, as courier-keys writes it): exactly one `KEY [NAME]` line.
NamedKey parse_public_key(std::string_view text, const std::string& source);

// The same, from files; `setting` names the option in errors ("--curve-... (key): FILE:LINE...").
// A secret key file readable by group or others is used, with a warning.
KeyPair load_secret_key(const std::string& setting, const std::string& path);
std::string load_public_key(const std::string& setting, const std::string& path);
// A file, or a directory whose *.pub files (sorted by name) each hold keys named after the file
// unless a line names its key. An empty list is an error: nobody could connect.
std::vector<NamedKey> load_authorized(const std::string& setting, const std::string& path);

// What courier-keys writes: NAME.key (0600, the secret key) and NAME.pub (`KEY NAME`).
std::string secret_file_text(const KeyPair& keys, const std::string& name);
std::string public_file_text(const NamedKey& key);
// Writes DIR/NAME.key and DIR/NAME.pub; refuses to overwrite unless `force`. Returns the pair.
KeyPair write_key_pair(const std::string& dir, const std::string& name, bool force);
// Makes DIR/{broker,gateway,worker}.{key,pub} and DIR/gateways.authorized (the gateway key) and
// DIR/workers.authorized (the worker key), each only if absent. Returns the files created.
std::vector<std::string> init_key_dir(const std::string& dir);

// A gateway's or worker's keys for its broker links.
struct ClientKeys {
  KeyPair own;
  std::string server_key;  // the broker's public key, z85
};
// Makes `socket` a CURVE client of the broker; call before connect.
void apply_client(zmq::socket_t& socket, const ClientKeys& keys);
// From the two options: nullopt when neither is set; ConfigError when only one is.
std::optional<ClientKeys> load_client_keys(const std::string& secret_setting,
                                           const std::string& secret_path,
                                           const std::string& server_setting,
                                           const std::string& server_path);

// tcp://127.x.y.z, tcp://localhost, tcp://[::1], ipc:// and inproc:// (port or path after them
// ignored): only processes on this host can connect.
bool is_loopback_endpoint(std::string_view endpoint);

}  // namespace courier::curve
