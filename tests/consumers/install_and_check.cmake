# cmake -DBUILD_DIR=<configured unclip build> -DPREFIX=<fresh prefix> -DLIBDIR=<lib dir, relative>
#       -DVERSION=<x.y.z> -DSONAME=<libunclip.so.x.y> -DSHARED=ON|OFF -P install_and_check.cmake
# Installs a build into an empty prefix with `cmake --install --prefix` and checks the layout:
# headers, the library (with its SONAME and no RUNPATH into a build tree), the CMake package
# files and a pkg-config file that finds its prefix from where it lies.
cmake_minimum_required(VERSION 3.25)
file(REMOVE_RECURSE "${PREFIX}")
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}" --config Release
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed:\n${out}")
endif()

set(expected
  include/unclip.h include/unclip/unclip.hpp include/unclip/pipeline.hpp include/unclip/version.hpp
  include/unclip/detail/export.hpp
  ${LIBDIR}/cmake/unclip/unclipConfig.cmake ${LIBDIR}/cmake/unclip/unclipConfigVersion.cmake
  ${LIBDIR}/cmake/unclip/unclipTargets.cmake ${LIBDIR}/pkgconfig/unclip.pc)
if(SHARED)
  list(APPEND expected ${LIBDIR}/libunclip.so ${LIBDIR}/${SONAME})
else()
  list(APPEND expected ${LIBDIR}/libunclip.a)
endif()
foreach(path IN LISTS expected)
  if(NOT EXISTS "${PREFIX}/${path}")
    message(FATAL_ERROR "not installed: ${path}")
  endif()
endforeach()
file(GLOB_RECURSE stray RELATIVE "${PREFIX}" "${PREFIX}/include/*.in" "${PREFIX}/include/*.cpp")
if(stray)
  message(FATAL_ERROR "installed but not headers: ${stray}")
endif()

file(STRINGS "${PREFIX}/${LIBDIR}/pkgconfig/unclip.pc" pc_version REGEX "^Version: ")
if(NOT pc_version STREQUAL "Version: ${VERSION}")
  message(FATAL_ERROR "unclip.pc says '${pc_version}', the project is ${VERSION}")
endif()
file(STRINGS "${PREFIX}/${LIBDIR}/pkgconfig/unclip.pc" pc_prefix REGEX "^prefix=")
if(NOT pc_prefix MATCHES "pcfiledir")
  message(FATAL_ERROR "unclip.pc is not relocatable: ${pc_prefix}")
endif()

if(SHARED)
  find_program(READELF readelf)
  if(READELF)
    execute_process(COMMAND "${READELF}" -d "${PREFIX}/${LIBDIR}/${SONAME}" OUTPUT_VARIABLE dynamic RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0 OR NOT dynamic MATCHES "\\(SONAME\\)[^\n]*\\[${SONAME}\\]")
      message(FATAL_ERROR "SONAME is not ${SONAME}:\n${dynamic}")
    endif()
    string(REGEX MATCHALL "\\((RPATH|RUNPATH)\\)[^\n]*" paths "${dynamic}")
    get_filename_component(build_root "${BUILD_DIR}" ABSOLUTE)
    string(FIND "${paths}" "${build_root}" at)
    if(NOT at EQUAL -1)
      message(FATAL_ERROR "the installed library's run path points into the build tree: ${paths}")
    endif()
    message(STATUS "SONAME ${SONAME}; run path: ${paths}")
  else()
    message(STATUS "readelf not found: SONAME and RUNPATH not checked")
  endif()
endif()
message(STATUS "installed into ${PREFIX}: layout ok")
