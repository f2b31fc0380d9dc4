# The test `install` (cmake -P): installs the build into a fresh prefix, checks that the installed
# bin/eomlab runs, then configures, builds and runs the installed examples/consumer as a project of its
# own that finds eomlab only through find_package(eomlab 0.1) in that prefix. Fails on the first step
# that fails, with its output.
#   -DBUILD_DIR=  the eomlab build to install        -DWORK_DIR=  scratch (emptied first)
#   -DVERSION=    the project version                -DCXX_COMPILER= -DC_COMPILER= [-DLAUNCHER=]
foreach(var BUILD_DIR WORK_DIR VERSION CXX_COMPILER C_COMPILER)
  if(NOT ${var})
    message(FATAL_ERROR "check_install.cmake: -D${var}= is missing")
  endif()
endforeach()

# Runs a command; stops the test with the command's output unless it exits 0. Sets `out` to stdout.
function(step title)
  string(TIMESTAMP start "%s")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
  string(TIMESTAMP stop "%s")
  math(EXPR seconds "${stop} - ${start}")
  if(NOT rc STREQUAL "0")
    message(FATAL_ERROR "${title} failed (${rc}):\n${ARGN}\n--- stdout\n${stdout}\n--- stderr\n${stderr}")
  endif()
  message(STATUS "${title}: ok (${seconds} s)")
  set(out "${stdout}" PARENT_SCOPE)
endfunction()

set(prefix ${WORK_DIR}/prefix)
set(consumer_build ${WORK_DIR}/consumer)
file(REMOVE_RECURSE ${WORK_DIR})

step("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

step("installed eomlab --version" ${prefix}/bin/eomlab --version)
if(NOT out MATCHES "^eomlab ${VERSION} ")
  message(FATAL_ERROR "installed eomlab --version printed '${out}', expected 'eomlab ${VERSION} ...'")
endif()

# The Python module from the prefix alone, in a fresh interpreter (when the build has it).
if(PYTHON_MODULE_DIR)
  step("installed Python module"
       ${CMAKE_COMMAND} -E env PYTHONPATH=${prefix}/${PYTHON_MODULE_DIR} ${PYTHON} -I -c
       "import sys; sys.path.insert(0, '${prefix}/${PYTHON_MODULE_DIR}'); import eomlab, numpy as np; \
assert eomlab.__file__.startswith('${prefix}'), eomlab.__file__; \
m = eomlab.Model(layers=[3, 4, 2]); f = eomlab.Objective(m, np.ones((5, 3)), np.array([0, 1, 0, 1, 0])); \
assert eomlab.Study.__module__ == 'eomlab_analysis.load'; \
print(eomlab.__file__, f.gradient(m.initial_parameters(1)).shape)")
  message("${out}")
endif()

# A fresh project: nothing of the eomlab build is visible, only the prefix (no package registry).
set(configure ${CMAKE_COMMAND} -S ${prefix}/share/eomlab/examples/consumer -B ${consumer_build}
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_C_COMPILER=${C_COMPILER})
if(LAUNCHER)
  list(APPEND configure -DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER})
endif()
step("configure examples/consumer with find_package(eomlab)" ${configure})
step("build examples/consumer" ${CMAKE_COMMAND} --build ${consumer_build})
step("run examples/consumer" ${consumer_build}/rosenbrock_orders)
message("${out}")
