# Configures, builds and runs tests/consumers/project in one way of using unclip.
#   cmake -DMODE=find_package|add_subdirectory|FetchContent -DPROJECT_DIR=... -DBINARY_DIR=...
#         -DMODEL=<tiny model> [-DPREFIX=<install prefix>] [-DSOURCE=<unclip tree>] [-DSHARED=ON]
#         [-DINSTALL=ON] [-DGENERATOR=...] [-DC_COMPILER=...] [-DCXX_COMPILER=...] -P run_cmake_consumer.cmake
# The build directory is kept, so a rerun only rebuilds what changed. A subproject build is made
# cheap: Release, no CUDA, baseline CPU kernels only (UNCLIP_CPU_DISPATCH=OFF).
cmake_minimum_required(VERSION 3.25)
foreach(var MODE PROJECT_DIR BINARY_DIR MODEL)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_cmake_consumer.cmake: ${var} is required")
  endif()
endforeach()

set(args -S "${PROJECT_DIR}" -B "${BINARY_DIR}" -DCMAKE_BUILD_TYPE=Release
  "-DUNCLIP_CONSUMER_MODE=${MODE}" -DUNCLIP_CUDA=OFF -DUNCLIP_CPU_DISPATCH=OFF -DCMAKE_INSTALL_LIBDIR=lib)
if(GENERATOR)
  list(APPEND args -G "${GENERATOR}")
endif()
foreach(pair "C_COMPILER;CMAKE_C_COMPILER" "CXX_COMPILER;CMAKE_CXX_COMPILER" "PREFIX;CMAKE_PREFIX_PATH"
             "SOURCE;UNCLIP_CONSUMER_SOURCE" "SHARED;UNCLIP_SHARED" "INSTALL;UNCLIP_INSTALL")
  list(GET pair 0 from)
  list(GET pair 1 to)
  if(DEFINED ${from})
    list(APPEND args "-D${to}=${${from}}")
  endif()
endforeach()

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}")
  endif()
  message(STATUS "${what}: ok")
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

run("configure (${MODE})" "${CMAKE_COMMAND}" ${args})
set(jobs "$ENV{CMAKE_BUILD_PARALLEL_LEVEL}")
if(NOT jobs)
  set(jobs 2)
endif()
run("build" "${CMAKE_COMMAND}" --build "${BINARY_DIR}" --config Release --parallel ${jobs})

foreach(program consumer_c consumer_cpp)
  set(exe "${BINARY_DIR}/${program}")
  if(NOT EXISTS "${exe}" AND EXISTS "${BINARY_DIR}/Release/${program}")
    set(exe "${BINARY_DIR}/Release/${program}")
  endif()
  set(png "${BINARY_DIR}/${program}.png")
  file(REMOVE "${png}")
  run("${program}" "${exe}" "${MODEL}" "${png}")
  message(STATUS "  ${last_output}")
  if(NOT EXISTS "${png}")
    message(FATAL_ERROR "${program} did not write ${png}")
  endif()
endforeach()
