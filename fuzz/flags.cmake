# Included by the top CMakeLists.txt, before the modules, when QATPLAN_FUZZ=ON: every library is
# built with libFuzzer's coverage instrumentation, AddressSanitizer and UndefinedBehaviorSanitizer
# (docs/fuzzing.md). Only clang has libFuzzer; the CUDA backend is left out (nvcc would not take
# these flags, and the targets run on the CPU).
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "QATPLAN_FUZZ=ON needs clang (libFuzzer): configure a fresh build directory with "
                      "-DCMAKE_C_COMPILER=clang, as scripts/fuzz.sh does")
endif()
if(NOT QATPLAN_CUDA STREQUAL "OFF")
  message(STATUS "qatplan: QATPLAN_FUZZ=ON builds without CUDA")
  set(QATPLAN_CUDA OFF CACHE STRING "Build the CUDA backend: AUTO (when nvcc is found), ON, OFF" FORCE)
endif()
if(QATPLAN_SANITIZE)
  message(FATAL_ERROR "QATPLAN_FUZZ=ON already builds with ASan+UBSan: leave QATPLAN_SANITIZE OFF")
endif()
# gcc's -Wno-format-truncation, in the project's warning flags, is unknown to clang.
# The sanitizers' instrumentation keeps "#pragma omp simd" loops from vectorising, which clang
# reports as -Wpass-failed: expected here, and no concern for the fuzz build.
add_compile_options("$<$<COMPILE_LANGUAGE:C>:-Wno-unknown-warning-option;-Wno-pass-failed>")
# Recovering from undefined behaviour would hide it from the fuzzer: abort instead.
add_compile_options("$<$<COMPILE_LANGUAGE:C>:-fsanitize=fuzzer-no-link,address,undefined;-fno-sanitize-recover=undefined;-fno-omit-frame-pointer>")
add_link_options(-fsanitize=address,undefined)
