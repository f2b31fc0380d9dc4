# Build helpers shared by every target of the project.
include(GNUInstallDirs)

# eomlab_warnings: an interface target carrying the project's warning flags (project code only).
add_library(eomlab_warnings INTERFACE)
target_compile_options(eomlab_warnings INTERFACE
  $<$<CXX_COMPILER_ID:GNU,Clang>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion>
  # GCC 12 reports false (maybe-)uninitialized warnings inside its AVX-512 intrinsics when inlining
  # Eigen (GCC bug 105593).
  $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized -Wno-uninitialized>)

# eomlab_optimization: -O3 (and -march=native when EOMLAB_NATIVE) for Release numerics.
add_library(eomlab_optimization INTERFACE)
target_compile_options(eomlab_optimization INTERFACE
  $<$<CONFIG:Release>:-O3>
  $<$<AND:$<BOOL:${EOMLAB_NATIVE}>,$<CXX_COMPILER_ID:GNU,Clang>>:-march=native>)

# eomlab_abi (installed as eomlab::abi): what code including the headers and sharing Eigen objects with
# the libraries must be compiled with: C++17, and -march=native when the libraries have it. That flag
# changes Eigen's alignment (64 bytes with AVX-512, 32 with AVX, else 16) and with it how Eigen allocates
# and frees every Vector: a program compiled without it that hands a Vector to the libraries corrupts
# the heap (examples/consumer then aborts with "double free or corruption"). Every module carries it.
add_library(eomlab_abi INTERFACE)
set_target_properties(eomlab_abi PROPERTIES EXPORT_NAME abi)
target_compile_features(eomlab_abi INTERFACE cxx_std_17)
target_compile_options(eomlab_abi INTERFACE
  $<$<AND:$<BOOL:${EOMLAB_NATIVE}>,$<CXX_COMPILER_ID:GNU,Clang>>:-march=native>)

# eomlab_module(name SOURCES ... DEPENDS ...): one static library per module of src/, target
# eomlab_<name> with the alias eomlab::<name> (the name it has after find_package(eomlab)).
# `cmake --install` puts the library in lib/ and the module's headers in include/eomlab/<name>/, and
# exports the target as eomlab::<name>; installed, the include path is include/eomlab (for
# "core/types.hpp") and include (for "eomlab/version.hpp"). The project's warning and optimization
# flags stay private to the build.
function(eomlab_module name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPENDS" ${ARGN})
  add_library(eomlab_${name} STATIC ${ARG_SOURCES})
  add_library(eomlab::${name} ALIAS eomlab_${name})
  set_target_properties(eomlab_${name} PROPERTIES EXPORT_NAME ${name})
  target_include_directories(eomlab_${name} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/src> $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}/generated>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/eomlab> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(eomlab_${name} PUBLIC ${ARG_DEPENDS} eomlab_abi
                        PRIVATE $<BUILD_INTERFACE:eomlab_warnings> $<BUILD_INTERFACE:eomlab_optimization>)
  if(EOMLAB_BLAS)
    target_link_libraries(eomlab_${name} PUBLIC eomlab_blas)
  endif()
  install(TARGETS eomlab_${name} EXPORT eomlabTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
          RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/src/${name}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/eomlab/${name}
          FILES_MATCHING PATTERN "*.hpp")
endfunction()

# Command prefix that runs N MPI ranks here, as root and oversubscribed if need be.
function(eomlab_mpi_prefix out np)
  set(${out} ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} --oversubscribe ${MPIEXEC_PREFLAGS} PARENT_SCOPE)
endfunction()

# eomlab_add_test(name SOURCES ... [DEPENDS ...] [MPI_NP n] [LABELS ...])
# Builds a GoogleTest program and registers it with ctest; with MPI_NP it runs as `mpirun -np n`.
function(eomlab_add_test name)
  cmake_parse_arguments(ARG "" "MPI_NP" "SOURCES;DEPENDS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPENDS} GTest::gtest eomlab_warnings eomlab_optimization)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  if(ARG_MPI_NP)
    eomlab_mpi_prefix(prefix ${ARG_MPI_NP})
    add_test(NAME ${name} COMMAND ${prefix} $<TARGET_FILE:${name}>)
    set_tests_properties(${name} PROPERTIES
      ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1"
      PROCESSORS ${ARG_MPI_NP})
    list(APPEND ARG_LABELS mpi)
  else()
    target_link_libraries(${name} PRIVATE GTest::gtest_main)
    add_test(NAME ${name} COMMAND ${name})
    list(APPEND ARG_LABELS unit)
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}")
endfunction()

# Generates generated/eomlab/version.hpp with the project version and the git commit of the source tree,
# at configure time and again at every build (target eomlab_version), so that a rebuild after a commit
# records that commit; the header is rewritten only when its text changes.
function(eomlab_version_header)
  set(args -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -DIN=${PROJECT_SOURCE_DIR}/cmake/version.hpp.in
           -DOUT=${PROJECT_BINARY_DIR}/generated/eomlab/version.hpp -DVERSION=${PROJECT_VERSION}
           "-DCOMPILER=${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION}")
  execute_process(COMMAND ${CMAKE_COMMAND} ${args} -P ${PROJECT_SOURCE_DIR}/cmake/git_version.cmake)
  add_custom_target(eomlab_version ALL
    COMMAND ${CMAKE_COMMAND} ${args} -P ${PROJECT_SOURCE_DIR}/cmake/git_version.cmake
    BYPRODUCTS ${PROJECT_BINARY_DIR}/generated/eomlab/version.hpp
    COMMENT "Recording the git commit in version.hpp")
endfunction()
