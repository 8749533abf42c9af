# cmake/aarch64-linux-gnu.cmake — CMake toolchain file for cross-compiling
# slm for 64-bit ARM Linux on a Debian x86-64 machine, so the NEON kernels
# are built and tested there (scripts/test-arm64 runs the result under
# qemu-aarch64).
#
# The compiler is Debian's gcc-aarch64-linux-gnu; the target's libraries are
# Debian multiarch packages (libpcre2-dev:arm64, libcmocka-dev:arm64, after
# `dpkg --add-architecture arm64`), which live in /usr/lib/aarch64-linux-gnu
# and /usr/include/aarch64-linux-gnu, where the cross compiler already looks.
# pkg-config is pointed at the arm64 .pc files only, so a library that is
# missing for arm64 fails the configure step instead of being taken from the
# host.
#
# Use: cmake -S . -B build-arm64 --toolchain cmake/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)

set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")

# Programs built here run under qemu (ctest and try_run use this).
find_program(SLM_QEMU_AARCH64 qemu-aarch64)
if(SLM_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${SLM_QEMU_AARCH64})
endif()
