#!/usr/bin/env bash
# tests/install/package_test.sh — the installed package works for a program
# outside slm's build tree. Installs BUILD_DIR into a temporary prefix
# (cmake --install), then builds against that prefix only:
#   - examples/embed.c with pkg-config, shared (-lslm) and static (libslm.a
#     plus slm.pc's private fields);
#   - README.md's "Embedding slm" program, as written there (its code block
#     and its `cc` line, with warnings as errors added);
#   - tests/install/CMakeLists.txt, a CMake project that does
#     find_package(slm) and links slm::slm and slm::slm_static;
# then runs each on the default model: the pkg-config ones through
# LD_LIBRARY_PATH, the CMake ones through the RPATH CMake gives them. Every
# program linked to the shared library must load it from the prefix.
# Exits 77 (ctest: skipped) after the builds when the model is absent.
# usage: package_test.sh SOURCE_DIR BUILD_DIR
# environment (set by tests/CMakeLists.txt): CC, SLM_VERSION,
#   SLM_INSTALL_LIBDIR (libdir under the prefix), SLM_CMAKE_GENERATOR,
#   SLM_EXTRA_CFLAGS (e.g. the sanitizer flags the library was built with).
set -euo pipefail

src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
cc=${CC:-cc}
extra_cflags=${SLM_EXTRA_CFLAGS:-}
libdir_rel=${SLM_INSTALL_LIBDIR:-lib}
model=$src/models/SmolLM2-135M-Instruct.Q4_1.gguf

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
libdir=$prefix/$libdir_rel

fail() {
    echo "package_test: FAILED: $*" >&2
    exit 1
}

echo "== cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" ||
    { cat "$tmp/install.log"; fail "cmake --install"; }
for f in include/slm.h bin/slm "$libdir_rel/libslm.a" "$libdir_rel/libslm.so" \
    "$libdir_rel/pkgconfig/slm.pc" "$libdir_rel/cmake/slm/slmConfig.cmake" \
    "$libdir_rel/cmake/slm/slmConfigVersion.cmake" share/doc/slm/README.md; do
    [[ -e $prefix/$f ]] || fail "not installed: $f"
done

# Builds with the compiler's warnings as errors; $extra_cflags unquoted on
# purpose (a list of flags), as are pkg-config's outputs below.
strict="-std=c11 -Wall -Wextra -Werror $extra_cflags"
export PKG_CONFIG_PATH=$libdir/pkgconfig

echo "== pkg-config: $(pkg-config --cflags --libs slm)"
# shellcheck disable=SC2046,SC2086
"$cc" $strict -pthread "$src/examples/embed.c" -o "$tmp/embed_pc" $(pkg-config --cflags --libs slm)
# The static link as README.md shows it: libslm.a by name, the rest from
# Libs.private / Requires.private.
# shellcheck disable=SC2046,SC2086
"$cc" $strict -pthread "$src/examples/embed.c" -o "$tmp/embed_pc_static" \
    $(pkg-config --cflags --static --libs slm | sed 's/-lslm/-l:libslm.a/')
if [[ $(readelf -d "$tmp/embed_pc_static") == *'Shared library: [libslm'* ]]; then
    fail "embed_pc_static needs libslm.so"
fi

echo "== README.md's program"
awk '/^## Embedding slm/ { s = 1 } s && /^```c$/ { c = 1; next } c && /^```$/ { exit } c' \
    "$src/README.md" >"$tmp/hello.c"
cc_line=$(awk '/^## Embedding slm/ { s = 1; next } s && /^## / { exit } s && /^cc / { print; exit }' \
    "$src/README.md")
grep -q slm_engine_submit "$tmp/hello.c" || fail "no C program under README.md's '## Embedding slm'"
[[ $cc_line == "cc "*"pkg-config"* ]] || fail "no 'cc ... pkg-config' line under README.md's '## Embedding slm'"
echo "$cc_line"
# The line runs as written, in the folder holding hello.c; only the
# compiler (and strict flags after it) differ.
(cd "$tmp" && eval "\"\$cc\" $strict ${cc_line#cc }") || fail "README.md's program does not build"

echo "== find_package(slm)"
cmake -S "$src/tests/install" -B "$tmp/cmake" ${SLM_CMAKE_GENERATOR:+-G "$SLM_CMAKE_GENERATOR"} \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="-Wall -Wextra -Werror $extra_cflags" \
    -DCMAKE_PREFIX_PATH="$prefix" -DSLM_VERSION="${SLM_VERSION:-}" \
    -DSLM_EMBED_C="$src/examples/embed.c" >"$tmp/cmake.log" 2>&1 ||
    { cat "$tmp/cmake.log"; fail "configuring tests/install"; }
cmake --build "$tmp/cmake" >>"$tmp/cmake.log" 2>&1 ||
    { cat "$tmp/cmake.log"; fail "building tests/install"; }

# Each program linked to the shared library resolves it in the prefix.
for exe in embed_pc hello cmake/embed_shared; do
    ldd_env=()
    [[ $exe == cmake/* ]] || ldd_env=(LD_LIBRARY_PATH="$libdir")
    # NOTE: ldd's output is kept whole first: grep -q would stop reading at
    # the match, and under pipefail ldd's SIGPIPE would fail the check.
    deps=$(env "${ldd_env[@]}" ldd "$tmp/$exe")
    grep -q "libslm\.so.* => $libdir/" <<<"$deps" ||
        fail "$exe does not load libslm.so from $libdir: $deps"
done

if [[ ! -f $model ]]; then
    echo "skipped: the default model ($model) is absent: built against the package, not run"
    exit 77
fi
for exe in embed_pc embed_pc_static hello cmake/embed_shared cmake/embed_static; do
    echo "== $exe"
    run_env=()
    [[ $exe == cmake/* ]] || run_env=(LD_LIBRARY_PATH="$libdir")
    rc=0
    env "${run_env[@]}" "$tmp/$exe" "$model" >"$tmp/run.log" 2>&1 || rc=$?
    if ((rc != 0)); then
        cat "$tmp/run.log"
        fail "$exe exited $rc"
    fi
    tail -n 3 "$tmp/run.log"
done
echo "package_test: ok"
