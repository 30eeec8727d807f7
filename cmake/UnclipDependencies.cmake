# Finds what unclip builds against. Every dependency is a Debian package; a miss stops configure
# and names the package. A target that a parent project already defines is reused as it is, and
# UNCLIP_DEPS_DIR (a prefix with include/ and lib/cmake/) serves offline or vendored builds.
include(GNUInstallDirs)

set(UNCLIP_DEPS_DIR "" CACHE PATH "unclip: extra prefix searched for dependencies")
if(UNCLIP_DEPS_DIR)
  list(PREPEND CMAKE_PREFIX_PATH "${UNCLIP_DEPS_DIR}")
endif()

function(unclip_missing what debian_package)
  message(FATAL_ERROR
    "unclip: ${what} was not found. Install the Debian package '${debian_package}' "
    "(apt-get install ${debian_package}) or point UNCLIP_DEPS_DIR at a prefix that has it.")
endfunction()

find_package(Threads REQUIRED)

# Eigen and nlohmann-json are header-only and private: they are wrapped in INTERFACE targets of
# ours so that an installed static library does not ask its consumers to find them.
if(NOT TARGET Eigen3::Eigen)
  find_package(Eigen3 3.3 CONFIG QUIET)
endif()
if(NOT TARGET Eigen3::Eigen)
  unclip_missing("Eigen3 (>= 3.3)" libeigen3-dev)
endif()
get_target_property(_unclip_eigen_inc Eigen3::Eigen INTERFACE_INCLUDE_DIRECTORIES)
add_library(unclip_eigen INTERFACE)
# Quoted: the property can be a list (nlohmann_json names its folder twice), which unquoted would
# split the generator expression into a bogus relative include folder.
target_include_directories(unclip_eigen SYSTEM INTERFACE "$<BUILD_INTERFACE:${_unclip_eigen_inc}>")

if(NOT TARGET nlohmann_json::nlohmann_json)
  find_package(nlohmann_json 3.9 CONFIG QUIET)
endif()
if(NOT TARGET nlohmann_json::nlohmann_json)
  unclip_missing("nlohmann-json (>= 3.9)" nlohmann-json3-dev)
endif()
get_target_property(_unclip_json_inc nlohmann_json::nlohmann_json INTERFACE_INCLUDE_DIRECTORIES)
add_library(unclip_json INTERFACE)
target_include_directories(unclip_json SYSTEM INTERFACE "$<BUILD_INTERFACE:${_unclip_json_inc}>")

# minizip (zlib's contrib) reads the zip container of PyTorch .ckpt files; unlike libzip it
# reports where an entry's data starts, which is what lets tensors stay memory-mapped.
if(NOT TARGET unclip_minizip)
  find_path(UNCLIP_MINIZIP_INCLUDE_DIR unzip.h PATH_SUFFIXES minizip)
  find_library(UNCLIP_MINIZIP_LIBRARY minizip)
  if(NOT UNCLIP_MINIZIP_INCLUDE_DIR OR NOT UNCLIP_MINIZIP_LIBRARY)
    unclip_missing("minizip (unzip.h, libminizip)" libminizip-dev)
  endif()
  add_library(unclip_minizip INTERFACE)
  target_include_directories(unclip_minizip SYSTEM INTERFACE $<BUILD_INTERFACE:${UNCLIP_MINIZIP_INCLUDE_DIR}>)
  # A static libminizip (UNCLIP_DEPS_DIR's is one) needs zlib after it on the link line, which only
  # a target that names zlib as its dependency guarantees.
  find_package(ZLIB QUIET)
  if(UNCLIP_MINIZIP_LIBRARY MATCHES "\\${CMAKE_STATIC_LIBRARY_SUFFIX}$" AND TARGET ZLIB::ZLIB)
    add_library(unclip_minizip_static STATIC IMPORTED)
    set_target_properties(unclip_minizip_static PROPERTIES
      IMPORTED_LOCATION "${UNCLIP_MINIZIP_LIBRARY}" INTERFACE_LINK_LIBRARIES ZLIB::ZLIB)
    target_link_libraries(unclip_minizip INTERFACE $<BUILD_INTERFACE:unclip_minizip_static>)
  endif()
endif()

find_path(UNCLIP_STB_INCLUDE_DIR stb_image.h PATH_SUFFIXES stb)
if(NOT UNCLIP_STB_INCLUDE_DIR)
  unclip_missing("stb (stb_image.h)" libstb-dev)
endif()

if(UNCLIP_BUILD_TESTS AND NOT TARGET doctest::doctest)
  find_package(doctest 2.4 CONFIG QUIET)
  if(NOT TARGET doctest::doctest)
    unclip_missing("doctest (needed by UNCLIP_BUILD_TESTS)" doctest-dev)
  endif()
endif()

if(UNCLIP_BUILD_EXAMPLES AND NOT TARGET CLI11::CLI11)
  find_package(CLI11 2.0 CONFIG QUIET)
  if(NOT TARGET CLI11::CLI11)
    unclip_missing("CLI11 (needed by UNCLIP_BUILD_EXAMPLES)" libcli11-dev)
  endif()
endif()
