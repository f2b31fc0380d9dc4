# `cmake --install build --prefix P` and find_package(eomlab):
#   P/bin/eomlab, P/bin/eomlab-mpirun                      the program and its interactive launcher
#   P/lib/libeomlab_<module>.a                              the module libraries
#   P/include/eomlab/<module>/*.hpp, P/include/eomlab/version.hpp
#   P/lib/cmake/eomlab/eomlab{Config,ConfigVersion,Targets*}.cmake   targets eomlab::<module>
#   P/share/eomlab/{jobs,examples,analysis}                 SLURM script, study configs and the consumer
#                                                           example, analysis/report
# A project then uses `find_package(eomlab 0.1 REQUIRED)` and links eomlab::flow etc.
# (examples/consumer; the test `install` builds it against a fresh installation).
include(CMakePackageConfigHelpers)

set(EOMLAB_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/eomlab)

install(TARGETS eomlab RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(PROGRAMS ${PROJECT_SOURCE_DIR}/scripts/eomlab-mpirun DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${PROJECT_BINARY_DIR}/generated/eomlab/version.hpp DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/eomlab)

set(eomlab_helper_targets eomlab_abi)
if(EOMLAB_BLAS)
  set_target_properties(eomlab_blas PROPERTIES EXPORT_NAME blas)
  list(APPEND eomlab_helper_targets eomlab_blas)
endif()
install(TARGETS ${eomlab_helper_targets} EXPORT eomlabTargets)
install(EXPORT eomlabTargets NAMESPACE eomlab:: DESTINATION ${EOMLAB_CMAKE_DIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/eomlabConfig.cmake.in
  ${PROJECT_BINARY_DIR}/eomlabConfig.cmake INSTALL_DESTINATION ${EOMLAB_CMAKE_DIR})
# 0.x: a minor version may change the interface.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/eomlabConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/eomlabConfig.cmake ${PROJECT_BINARY_DIR}/eomlabConfigVersion.cmake
        DESTINATION ${EOMLAB_CMAKE_DIR})

# What runs or reads eomlab rather than links it (analysis/report finds its package next to itself).
install(DIRECTORY ${PROJECT_SOURCE_DIR}/jobs ${PROJECT_SOURCE_DIR}/examples ${PROJECT_SOURCE_DIR}/analysis
        DESTINATION ${CMAKE_INSTALL_DATADIR}/eomlab USE_SOURCE_PERMISSIONS
        PATTERN "__pycache__" EXCLUDE PATTERN "*.pyc" EXCLUDE)
