// The admin listener: routing, methods, the address check, and a real server on port 0 that
// answers, refuses oversized heads, and stops.
#include "common/admin_http.hpp"

#include <gtest/gtest.h>

#include <array>

#include "common/config.hpp"

namespace courier {
namespace {

using Routes = std::map<std::string, AdminHandler, std::less<>>;

Routes routes() {
  return {{"/metrics",
           [] {
             return AdminResponse{200, "text/plain", "m 1\n"};
           }},
          {"/boom", []() -> AdminResponse { throw std::runtime_error("x"); }}};
}

TEST(AdminHttpServer, AnswersRoutesIgnoringTheQueryAndRefusesTheRest) {
  const auto r = routes();
  EXPECT_EQ(AdminHttpServer::answer(r, http::verb::get, "/metrics").body, "m 1\n");
  EXPECT_EQ(AdminHttpServer::answer(r, http::verb::head, "/metrics?x=1").status, 200u);
  EXPECT_EQ(AdminHttpServer::answer(r, http::verb::post, "/metrics").status, 405u);
  EXPECT_EQ(AdminHttpServer::answer(r, http::verb::get, "/other").status, 404u);
  EXPECT_EQ(AdminHttpServer::answer(r, http::verb::get, "/boom").status, 500u);
}

TEST(AdminHttpServer, RejectsAnAddressThatIsNotHostPortNamingTheSetting) {
  for (const char* bad : {"9902", ":9902", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:9x"}) {
    try {
      parse_admin_listen("--admin-listen (broker.admin_listen)", bad);
      ADD_FAILURE() << bad;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("broker.admin_listen"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(parse_admin_listen("x", "[::1]:9902").port(), 9902);
  EXPECT_EQ(parse_admin_listen("x", "0.0.0.0:9903").address().to_string(), "0.0.0.0");
}

std::string admin_exchange(std::uint16_t port, const std::string& request) {
  asio::io_context io;
  tcp::socket socket(io);
  socket.connect({asio::ip::make_address("127.0.0.1"), port});
  asio::write(socket, asio::buffer(request));
  std::string reply;
  boost::system::error_code ec;
  std::array<char, 4096> buf;
  for (;;) {
    const auto n = socket.read_some(asio::buffer(buf), ec);
    if (ec) break;
    reply.append(buf.data(), n);
  }
  return reply;
}

TEST(AdminHttpServer, ServesOverTcpAndRefusesAnOversizedHead) {
  AdminHttpServer server("x", "127.0.0.1:0", routes());
  server.start();
  const auto port = server.endpoint().port();
  const auto ok = admin_exchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(ok.rfind("HTTP/1.1 200", 0), 0u) << ok;
  EXPECT_NE(ok.find("m 1\n"), std::string::npos) << ok;
  const auto head = admin_exchange(port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(head.find("Content-Length: 4"), std::string::npos) << head;
  EXPECT_EQ(head.find("m 1\n"), std::string::npos) << head;
  const auto big =
      admin_exchange(port, "GET /metrics HTTP/1.1\r\nX: " + std::string(9000, 'a') + "\r\n\r\n");
  EXPECT_EQ(big.rfind("HTTP/1.1 431", 0), 0u) << big;
  server.stop();
  server.stop();  // idempotent
}

TEST(AdminHttpServer, AnAddressInUseIsAStartUpError) {
  AdminHttpServer first("x", "127.0.0.1:0", routes());
  const auto port = first.endpoint().port();
  EXPECT_THROW(AdminHttpServer("--admin-listen (worker.admin_listen)",
                               "127.0.0.1:" + std::to_string(port), routes()),
               ConfigError);
}

}  // namespace
}  // namespace courier
