// courier-keys: makes the CURVE key pairs of the broker links (docs/security.md).
#include <iostream>

#include "common/cli.hpp"
#include "common/curve.hpp"

int main(int argc, char** argv) {
  using namespace courier;
  CLI::App app{
      "courier-keys: makes CURVE key pairs for the broker links (z85; see docs/security.md)",
      "courier-keys"};
  app.require_subcommand(1);
  app.set_version_flag("--version", version_line(app.get_name()),
                       "Print the version and source revision, and exit");

  std::string name, out_dir = ".";
  bool force = false;
  auto* generate = app.add_subcommand(
      "generate", "Write DIR/NAME.key (secret, mode 0600) and DIR/NAME.pub (`KEY NAME`)");
  generate->add_option("name", name, "Key name, e.g. gateway-1 (A-Z a-z 0-9 . _ - @)")->required();
  generate->add_option("-o,--out", out_dir, "Directory to write to [.]");
  generate->add_flag("--force", force, "Replace existing files");

  std::string init_dir;
  auto* init = app.add_subcommand(
      "init",
      "Create broker, gateway and worker key pairs in DIR, with gateways.authorized and "
      "workers.authorized, each only if absent (safe to run on every start)");
  init->add_option("dir", init_dir, "Directory to write to")->required();

  std::string secret_file;
  auto* show = app.add_subcommand(
      "public", "Print the public key (as a `KEY NAME` line) of a secret key file");
  show->add_option("file", secret_file, "Secret key file")->required();
  show->add_option("--name", name, "Name to print after the key [file name]");

  return run_main(app, argc, argv, [&] {
    if (!curve::available()) {
      std::cerr << "courier-keys: this libzmq was built without CURVE support\n";
      return 1;
    }
    if (generate->parsed()) {
      const auto keys = curve::write_key_pair(out_dir, name, force);
      std::cout << out_dir << "/" << name << ".key\n"
                << out_dir << "/" << name << ".pub: " << keys.public_key << "\n";
    } else if (init->parsed()) {
      const auto created = curve::init_key_dir(init_dir);
      for (const auto& file : created) std::cout << "created " << file << "\n";
      if (created.empty()) std::cout << init_dir << ": all keys present, nothing to do\n";
    } else if (show->parsed()) {
      const auto keys = curve::load_secret_key("courier-keys public", secret_file);
      if (name.empty()) {
        name = secret_file.substr(secret_file.find_last_of('/') + 1);
        name = name.substr(0, name.rfind(".key"));
      }
      std::cout << curve::public_file_text({keys.public_key, name});
    }
    return 0;
  });
}
