# Install rules: library, C++ headers, the C header, CMake package files and pkg-config file.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(UNCLIP_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/unclip")
set(_unclip_export_targets unclip unclip_eigen unclip_json)
if(TARGET unclip_cuda)
  list(APPEND _unclip_export_targets unclip_cuda)
endif()
install(TARGETS ${_unclip_export_targets} EXPORT unclipTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/unclip DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.hpp")
install(FILES "${PROJECT_BINARY_DIR}/include/unclip/version.hpp"
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/unclip)
install(FILES "${PROJECT_BINARY_DIR}/include/unclip.h" DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT unclipTargets NAMESPACE unclip:: DESTINATION ${UNCLIP_CMAKE_DIR})

configure_package_config_file(cmake/unclipConfig.cmake.in
  "${PROJECT_BINARY_DIR}/unclipConfig.cmake" INSTALL_DESTINATION ${UNCLIP_CMAKE_DIR})
write_basic_package_version_file("${PROJECT_BINARY_DIR}/unclipConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/unclipConfig.cmake" "${PROJECT_BINARY_DIR}/unclipConfigVersion.cmake"
  DESTINATION ${UNCLIP_CMAKE_DIR})

set(UNCLIP_PC_LIBS_PRIVATE "-lpthread")
if(TARGET unclip_cuda)
  string(APPEND UNCLIP_PC_LIBS_PRIVATE " -lunclip_cuda -lcublasLt -lcublas -lcudart")
  foreach(_unclip_dl IN LISTS CMAKE_DL_LIBS)  # cuDNN is loaded at run time
    string(APPEND UNCLIP_PC_LIBS_PRIVATE " -l${_unclip_dl}")
  endforeach()
endif()
# The prefix is found from the .pc file's own place, so `cmake --install --prefix` elsewhere and
# a moved install tree both work; an absolute CMAKE_INSTALL_LIBDIR pins it instead.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(UNCLIP_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _unclip_pc_up "/unclip-root/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/unclip-root")
  set(UNCLIP_PC_PREFIX "\${pcfiledir}/${_unclip_pc_up}")
endif()
set(UNCLIP_PC_CFLAGS "")
if(UNCLIP_SHARED)
  set(UNCLIP_PC_CFLAGS " -DUNCLIP_SHARED_LIBRARY")
endif()
configure_file(cmake/unclip.pc.in "${PROJECT_BINARY_DIR}/unclip.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/unclip.pc" DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
