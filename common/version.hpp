// What this build is: the project version (CMakeLists.txt) and the source revision it was built
// from (`git describe`, or COURIER_REVISION when built outside a checkout, or "unknown").
#pragma once

#include <string_view>

namespace courier {

std::string_view version();
std::string_view revision();

}  // namespace courier
