#include "common/curve.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/config.hpp"

namespace courier::curve {
namespace {

namespace fs = std::filesystem;

// A fresh directory, removed at the end.
class TempDir {
 public:
  TempDir() {
    static int n = 0;
    path_ = fs::temp_directory_path() /
            ("courier-curve-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name, const std::string& text) const {
    const auto p = path_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  std::string str() const { return path_.string(); }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

std::string read(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The message of the ConfigError `f` throws, or "" when it throws none.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Curve, IsAvailableInThisLibzmq) { EXPECT_TRUE(available()); }

TEST(Curve, GeneratedKeysAreZ85AndThePublicKeyDerivesFromTheSecret) {
  const auto a = generate();
  const auto b = generate();
  EXPECT_EQ(a.public_key.size(), kKeyText);
  EXPECT_TRUE(is_key(a.public_key));
  EXPECT_TRUE(is_key(a.secret_key));
  EXPECT_NE(a.secret_key, b.secret_key);
  EXPECT_EQ(public_of(a.secret_key), a.public_key);
  EXPECT_EQ(encode(*decode(a.public_key)), a.public_key);
}

TEST(Curve, IsKeyRejectsWrongLengthsAndCharactersOutsideZ85) {
  const auto k = generate().public_key;
  EXPECT_FALSE(is_key(k.substr(1)));
  EXPECT_FALSE(is_key(k + "0"));
  EXPECT_FALSE(is_key(std::string(39, '0') + "\""));
  EXPECT_FALSE(is_key(std::string(39, '0') + " "));
  EXPECT_FALSE(is_key(""));
  // Five '#' decode past 2^32: not the encoding of any key.
  EXPECT_FALSE(is_key(std::string(35, '0') + "#####"));
}

TEST(Curve, SecretKeyFileSkipsCommentsAndWhitespace) {
  const auto k = generate();
  const auto parsed = parse_secret_key("# a comment\n\n   " + k.secret_key + "  \r\n# end\n", "f");
  EXPECT_EQ(parsed.secret_key, k.secret_key);
  EXPECT_EQ(parsed.public_key, k.public_key);
}

TEST(Curve, SecretKeyFileErrorsNameFileAndLine) {
  const auto k = generate();
  EXPECT_EQ(error_of([] { parse_secret_key("# only a comment\n", "s.key"); }),
            "s.key: no CURVE secret key in it");
  EXPECT_EQ(error_of([] { parse_secret_key("\n\nnot-a-key\n", "s.key"); }),
            "s.key:3: not a CURVE secret key (40 z85 characters)");
  EXPECT_EQ(error_of([&] { parse_secret_key(k.secret_key + "\n" + k.secret_key, "s.key"); }),
            "s.key:2: a secret key file holds one key only");
}

TEST(Curve, AuthorizedKeysHaveNamesOrADefaultName) {
  const auto a = generate().public_key;
  const auto b = generate().public_key;
  const auto keys = parse_authorized("# gateways\n" + a + " gateway-1\n\n  " + b + "\t \n", "list");
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].key, a);
  EXPECT_EQ(keys[0].name, "gateway-1");
  EXPECT_EQ(keys[1].key, b);
  EXPECT_EQ(keys[1].name, "key-" + b.substr(0, 8));
  EXPECT_EQ(parse_authorized(b + "\n", "list", "from-file")[0].name, "from-file");
}

TEST(Curve, NoKeyStartsWithHashSoCommentsAreUnambiguous) {
  // '#' is in the z85 alphabet, but as digit 84 it never leads a 32-bit group.
  for (int i = 0; i < 2'000; ++i) {
    const auto k = generate();
    ASSERT_NE(k.public_key.front(), '#');
    ASSERT_NE(k.secret_key.front(), '#');
  }
  EXPECT_FALSE(is_key("#" + generate().public_key.substr(1)));
}

TEST(Curve, AuthorizedKeysRejectBadLinesNamingFileAndLine) {
  const auto a = generate().public_key;
  EXPECT_EQ(error_of([&] { parse_authorized(a + " ok\nxyz\n", "gw.list"); }),
            "gw.list:2: not a CURVE public key (40 z85 characters, optionally followed by a "
            "name)");
  EXPECT_EQ(error_of([&] { parse_authorized(a + " two words\n", "gw.list"); }),
            "gw.list:1: the name after the key must be 1-64 characters of A-Z a-z 0-9 . _ - @ :");
  EXPECT_EQ(error_of([&] { parse_authorized(a + " x\n# c\n" + a + " y\n", "gw.list"); }),
            "gw.list:3: key listed twice");
  // A key cut short by one character is not a key. Its last one: without its first, a key's
  // rest may begin with '#' (a z85 digit) and read as a comment.
  EXPECT_NE(error_of([&] { parse_authorized(a.substr(0, 39) + " x\n", "gw.list"); }), "");
}

TEST(Curve, PublicKeyFileHoldsExactlyOneKey) {
  const auto a = generate().public_key;
  EXPECT_EQ(parse_public_key("# broker\n" + a + " broker\n", "b.pub").key, a);
  EXPECT_EQ(parse_public_key(a, "b.pub").key, a);
  EXPECT_EQ(error_of([&] { parse_public_key(a + "\n" + a + "\n", "b.pub"); }),
            "b.pub:2: a public key file holds one key only");
  EXPECT_EQ(error_of([] { parse_public_key("", "b.pub"); }), "b.pub: no CURVE public key in it");
}

TEST(Curve, GenerateWritesASecretFileOnlyTheOwnerReadsAndAPublicFileThatRoundTrips) {
  TempDir dir;
  const auto keys = write_key_pair(dir.str(), "gw-1", false);
  struct stat st {};
  ASSERT_EQ(::stat((dir / "gw-1.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(load_secret_key("s", (dir / "gw-1.key").string()).secret_key, keys.secret_key);
  EXPECT_EQ(load_secret_key("s", (dir / "gw-1.key").string()).public_key, keys.public_key);
  EXPECT_EQ(load_public_key("p", (dir / "gw-1.pub").string()), keys.public_key);
  const auto listed = load_authorized("a", (dir / "gw-1.pub").string());
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].name, "gw-1");
  // Never overwritten by accident; replaced when asked.
  EXPECT_THROW(write_key_pair(dir.str(), "gw-1", false), std::system_error);
  EXPECT_NE(write_key_pair(dir.str(), "gw-1", true).secret_key, keys.secret_key);
  EXPECT_THROW(write_key_pair(dir.str(), "../escape", false), std::invalid_argument);
}

TEST(Curve, InitCreatesEveryFileOnceAndTheListsMatchTheKeys) {
  TempDir dir;
  const auto created = init_key_dir(dir.str());
  EXPECT_EQ(created.size(), 8u);
  const auto gateway = load_secret_key("s", (dir / "gateway.key").string());
  const auto worker = load_secret_key("s", (dir / "worker.key").string());
  const auto broker = load_secret_key("s", (dir / "broker.key").string());
  EXPECT_EQ(load_public_key("p", (dir / "broker.pub").string()), broker.public_key);
  const auto gateways = load_authorized("a", (dir / "gateways.authorized").string());
  const auto workers = load_authorized("a", (dir / "workers.authorized").string());
  ASSERT_EQ(gateways.size(), 1u);
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(gateways[0].key, gateway.public_key);
  EXPECT_EQ(gateways[0].name, "gateway");
  EXPECT_EQ(workers[0].key, worker.public_key);
  // Idempotent: a second run changes nothing, keeping an edited list.
  const auto edited = read(dir / "gateways.authorized") + generate().public_key + " extra\n";
  dir.file("gateways.authorized", edited);
  EXPECT_TRUE(init_key_dir(dir.str()).empty());
  EXPECT_EQ(load_secret_key("s", (dir / "gateway.key").string()).secret_key, gateway.secret_key);
  EXPECT_EQ(read(dir / "gateways.authorized"), edited);
}

TEST(Curve, AuthorizedDirectoryReadsEveryPubFileNamedAfterIt) {
  TempDir dir;
  const auto a = generate().public_key;
  const auto b = generate().public_key;
  dir.file("gw-a.pub", a + "\n");
  dir.file("gw-b.pub", "# second\n" + b + " named-b\n");
  dir.file("README", "not a key file, ignored\n");
  const auto keys = load_authorized("a", dir.str());
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].key, a);
  EXPECT_EQ(keys[0].name, "gw-a");
  EXPECT_EQ(keys[1].name, "named-b");
  dir.file("gw-c.pub", a + "\n");
  EXPECT_NE(error_of([&] { load_authorized("a", dir.str()); }).find("listed in another file"),
            std::string::npos);
}

TEST(Curve, AnEmptyAuthorizedListOrAMissingFileStopsStartUp) {
  TempDir dir;
  const auto empty = dir.file("empty.authorized", "# nobody\n");
  EXPECT_NE(error_of([&] { load_authorized("--keys (k)", empty); }).find("lists no key"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              load_authorized("--keys (k)", dir.str() + "/missing");
            }).find("cannot be read"),
            std::string::npos);
}

TEST(Curve, ClientKeysNeedBothFilesOrNone) {
  TempDir dir;
  init_key_dir(dir.str());
  EXPECT_FALSE(load_client_keys("s", "", "b", ""));
  EXPECT_EQ(error_of([&] { load_client_keys("s", (dir / "gateway.key").string(), "b", ""); }),
            "CURVE needs both s and b (only s is set)");
  const auto keys =
      load_client_keys("s", (dir / "gateway.key").string(), "b", (dir / "broker.pub").string());
  ASSERT_TRUE(keys);
  EXPECT_EQ(keys->server_key, load_public_key("p", (dir / "broker.pub").string()));
}

TEST(Curve, LoopbackEndpoints) {
  for (const char* e : {"tcp://127.0.0.1:5555", "tcp://127.1.2.3:*", "tcp://localhost:5555",
                        "tcp://[::1]:5555", "ipc:///tmp/x", "inproc://x"}) {
    EXPECT_TRUE(is_loopback_endpoint(e)) << e;
  }
  for (const char* e : {"tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://10.0.0.1:5555",
                        "tcp://[::]:5555", "tcp://eth0:5555", "tcp://127.0.0.1.evil:1",
                        "tcp://127.example.com:1", "tcp://[::1]x:1", "udp://127.0.0.1:1"}) {
    EXPECT_FALSE(is_loopback_endpoint(e)) << e;
  }
}

}  // namespace
}  // namespace courier::curve
