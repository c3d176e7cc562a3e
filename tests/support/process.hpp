// A child process for integration tests: posix_spawn with extra environment, output captured in a
// log file for failure messages, deadline-bounded waits, and SIGTERM-then-SIGKILL on destruction.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace courier::testing {

using EnvList = std::vector<std::pair<std::string, std::string>>;

// "exited with 3", "killed by signal 9 (Killed)": for assertion messages.
std::string describe_wait_status(int status);

class ChildProcess {
 public:
  static constexpr std::chrono::milliseconds kDefaultGrace{3'000};

  // Starts `path` (searched in PATH when it has no '/') with `args` (argv[1..]) and the test's
  // environment plus `env` (which overrides). stdin is /dev/null; stdout and stderr go to
  // log_path(), in a fresh temp directory. Throws std::system_error when the spawn fails.
  ChildProcess(const std::string& path, const std::vector<std::string>& args,
               const EnvList& env = {});
  // kill(kDefaultGrace); the temp directory is removed unless COURIER_KEEP_TEST_LOGS is set.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool running();  // false once it has exited (and then it is reaped)

  std::error_code signal(int signal_number);

  // The raw waitpid status (use WIFEXITED/WEXITSTATUS or describe_wait_status) once the child has
  // exited; nullopt when it is still running at the deadline. Repeated calls return the same
  // status.
  std::optional<int> wait_exit(std::chrono::steady_clock::time_point deadline);
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    return wait_exit(std::chrono::steady_clock::now() + timeout);
  }

  // SIGTERM, up to `grace` for an exit, then SIGKILL. Returns the wait status.
  std::optional<int> kill(std::chrono::milliseconds grace = kDefaultGrace);

  // VmRSS from /proc/<pid>/status, in bytes; nullopt once the process is gone.
  std::optional<std::uint64_t> resident_bytes() const;

  const std::filesystem::path& log_path() const { return log_path_; }
  std::string log_text() const;  // everything the child wrote so far

 private:
  std::optional<int> try_reap();

  pid_t pid_ = -1;
  int pidfd_ = -1;  // readable when the child exits; -1 on kernels without pidfd_open
  std::optional<int> status_;
  std::filesystem::path temp_dir_;
  std::filesystem::path log_path_;
};

}  // namespace courier::testing
