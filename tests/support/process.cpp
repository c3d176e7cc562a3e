#include "tests/support/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

extern char** environ;

namespace courier::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::filesystem::path make_temp_dir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "courier-test-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "mkdtemp " + pattern);
  }
  return pattern;
}

// The parent's environment with `extra` applied on top, as "NAME=value" strings.
std::vector<std::string> merged_environment(const EnvList& extra) {
  std::map<std::string, std::string> values;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    const auto equals = text.find('=');
    if (equals == std::string_view::npos) continue;
    values[std::string(text.substr(0, equals))] = std::string(text.substr(equals + 1));
  }
  for (const auto& [name, value] : extra) values[name] = value;
  std::vector<std::string> result;
  result.reserve(values.size());
  for (const auto& [name, value] : values) result.push_back(name + "=" + value);
  return result;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> result;
  result.reserve(strings.size() + 1);
  for (auto& text : strings) result.push_back(text.data());
  result.push_back(nullptr);
  return result;
}

}  // namespace

std::string describe_wait_status(int status) {
  std::ostringstream out;
  if (WIFEXITED(status)) {
    out << "exited with " << WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    out << "killed by signal " << WTERMSIG(status) << " (" << ::strsignal(WTERMSIG(status)) << ")";
  } else {
    out << "wait status " << status;
  }
  return out.str();
}

ChildProcess::ChildProcess(const std::string& path, const std::vector<std::string>& args,
                           const EnvList& env) {
  temp_dir_ = make_temp_dir();
  log_path_ = temp_dir_ / (std::filesystem::path(path).filename().string() + ".log");

  std::vector<std::string> argv_strings{path};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<std::string> env_strings = merged_environment(env);
  std::vector<char*> argv = pointers(argv_strings);
  std::vector<char*> envp = pointers(env_strings);

  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  ::posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ::posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);

  // The test runner may block or ignore signals (gtest threads, a shell's SIGINT): the child must
  // start with defaults, or SIGTERM-based shutdown tests would pass or fail for the wrong reason.
  posix_spawnattr_t attributes;
  ::posix_spawnattr_init(&attributes);
  sigset_t none;
  sigemptyset(&none);
  sigset_t all;
  sigfillset(&all);
  sigdelset(&all, SIGKILL);  // cannot be caught, so there is nothing to reset
  sigdelset(&all, SIGSTOP);
  ::posix_spawnattr_setsigmask(&attributes, &none);
  ::posix_spawnattr_setsigdefault(&attributes, &all);
  ::posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  const int rc =
      ::posix_spawnp(&pid_, path.c_str(), &actions, &attributes, argv.data(), envp.data());
  ::posix_spawn_file_actions_destroy(&actions);
  ::posix_spawnattr_destroy(&attributes);
  if (rc != 0) {
    pid_ = -1;
    std::error_code ignored;
    std::filesystem::remove_all(temp_dir_, ignored);
    throw std::system_error(rc, std::generic_category(), "posix_spawn " + path);
  }
  // Opened before anyone can reap the child, so the pid cannot have been reused.
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) kill(kDefaultGrace);
  if (pidfd_ >= 0) ::close(pidfd_);
  if (std::getenv("COURIER_KEEP_TEST_LOGS") == nullptr) {
    std::error_code ignored;
    std::filesystem::remove_all(temp_dir_, ignored);
  }
}

std::optional<int> ChildProcess::try_reap() {
  if (status_) return status_;
  int status = 0;
  pid_t reaped;
  do {
    reaped = ::waitpid(pid_, &status, WNOHANG);
  } while (reaped < 0 && errno == EINTR);
  if (reaped == pid_) status_ = status;
  return status_;
}

bool ChildProcess::running() { return pid_ > 0 && !try_reap(); }

std::error_code ChildProcess::signal(int signal_number) {
  // Signalling a reaped pid could hit an unrelated process that reused it.
  if (try_reap()) return std::make_error_code(std::errc::no_such_process);
  if (::kill(pid_, signal_number) != 0) return {errno, std::generic_category()};
  return {};
}

std::optional<int> ChildProcess::wait_exit(Clock::time_point deadline) {
  for (;;) {
    if (auto status = try_reap()) return status;
    const auto now = Clock::now();
    if (now >= deadline) return std::nullopt;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
    if (pidfd_ >= 0) {
      pollfd waiter{pidfd_, POLLIN, 0};
      ::poll(&waiter, 1, static_cast<int>(std::min<long long>(left.count(), 60'000)));
    } else {
      // No pidfd (old kernel): poll waitpid; still bounded by the deadline.
      std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(5)));
    }
  }
}

std::optional<int> ChildProcess::kill(std::chrono::milliseconds grace) {
  if (auto status = try_reap()) return status;
  signal(SIGTERM);
  if (auto status = wait_exit(grace)) return status;
  signal(SIGKILL);
  return wait_exit(std::chrono::seconds(10));
}

std::string ChildProcess::log_text() const {
  std::ifstream in(log_path_, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::optional<std::uint64_t> ChildProcess::resident_bytes() const {
  std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) != 0) continue;
    // "VmRSS:     1234 kB"
    return std::stoull(line.substr(6)) * 1024;
  }
  return std::nullopt;
}

}  // namespace courier::testing
