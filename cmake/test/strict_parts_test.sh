#!/bin/sh
# ipsan_include_part / ipsan_require (cmake/IpsanHelpers.cmake): a missing CMake part fails
# configure under IPSAN_STRICT with a message naming it, and is only a warning without it; a
# present part is included with its variables in the caller's scope.
# Usage: strict_parts_test.sh <path to cmake/> <cmake binary>
set -eu
helpers=$1
cmake=${2:-cmake}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/src"
cat > "$dir/src/CMakeLists.txt" <<EOT
cmake_minimum_required(VERSION 3.25)
project(strict_parts NONE)
list(APPEND CMAKE_MODULE_PATH $helpers)
include(IpsanHelpers)
ipsan_include_part(present.cmake)
if(NOT PART_VARIABLE STREQUAL "seen")
  message(FATAL_ERROR "a part's variables must reach the including scope")
endif()
ipsan_include_part(absent.cmake)
EOT
echo 'set(PART_VARIABLE seen)' > "$dir/src/present.cmake"

if "$cmake" -S "$dir/src" -B "$dir/strict" -DIPSAN_STRICT=ON > "$dir/strict.log" 2>&1; then
  echo "FAIL: configure succeeded with a missing part under IPSAN_STRICT"; cat "$dir/strict.log"; exit 1
fi
grep -q "absent.cmake is missing" "$dir/strict.log" || {
  echo "FAIL: the error does not name the missing part"; cat "$dir/strict.log"; exit 1; }
"$cmake" -S "$dir/src" -B "$dir/lax" -DIPSAN_STRICT=OFF > "$dir/lax.log" 2>&1 || {
  echo "FAIL: configure without IPSAN_STRICT must only warn"; cat "$dir/lax.log"; exit 1; }
grep -q "absent.cmake is missing" "$dir/lax.log" || {
  echo "FAIL: no warning for the missing part"; cat "$dir/lax.log"; exit 1; }
echo "ok: strict fails, lax warns"
