# `cmake --build <build> --target docs`: the API reference of the installed headers (unclip.h and
# include/unclip/), with README.md as its front page, in <build>/docs/html. Top level only; without
# Doxygen (Debian package doxygen) the target says so and does nothing.
if(NOT PROJECT_IS_TOP_LEVEL)
  return()
endif()
find_package(Doxygen QUIET)
if(NOT DOXYGEN_FOUND)
  add_custom_target(docs COMMAND ${CMAKE_COMMAND} -E echo "unclip: doxygen not found (Debian package doxygen)")
  return()
endif()
set(DOXYGEN_PROJECT_NAME "unclip")
set(DOXYGEN_PROJECT_BRIEF "Stable Diffusion 2.1 unCLIP inference: C API and C++ API")
set(DOXYGEN_OUTPUT_DIRECTORY "${PROJECT_BINARY_DIR}/docs")
set(DOXYGEN_FILE_PATTERNS *.h *.hpp *.md)
set(DOXYGEN_RECURSIVE YES)
set(DOXYGEN_EXTRACT_ALL YES)
set(DOXYGEN_EXCLUDE_SYMBOLS "unclip::detail" "unclip::detail::*")
set(DOXYGEN_EXCLUDE_PATTERNS "*/detail/*")
set(DOXYGEN_STRIP_FROM_PATH "${PROJECT_SOURCE_DIR}/include" "${PROJECT_BINARY_DIR}/include" "${PROJECT_SOURCE_DIR}")
set(DOXYGEN_STRIP_FROM_INC_PATH "${PROJECT_SOURCE_DIR}/include" "${PROJECT_BINARY_DIR}/include")
set(DOXYGEN_FILTER_PATTERNS "*.h=sed -f ${PROJECT_SOURCE_DIR}/cmake/doxygen_filter.sed"
                            "*.hpp=sed -f ${PROJECT_SOURCE_DIR}/cmake/doxygen_filter.sed")
set(DOXYGEN_USE_MDFILE_AS_MAINPAGE "${PROJECT_SOURCE_DIR}/README.md")
set(DOXYGEN_MACRO_EXPANSION YES)
set(DOXYGEN_PREDEFINED "UNCLIP_API=" "UNCLIP_CXX_API=")
set(DOXYGEN_WARN_IF_UNDOCUMENTED NO)
set(DOXYGEN_QUIET YES)
set(DOXYGEN_GENERATE_TREEVIEW YES)
doxygen_add_docs(docs
  "${PROJECT_BINARY_DIR}/include/unclip.h" "${PROJECT_BINARY_DIR}/include/unclip/version.hpp"
  "${PROJECT_SOURCE_DIR}/include/unclip" "${PROJECT_SOURCE_DIR}/README.md"
  COMMENT "unclip: API reference in ${PROJECT_BINARY_DIR}/docs/html")
