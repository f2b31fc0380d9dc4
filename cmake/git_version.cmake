# Script mode (cmake -P), run at every build by the eomlab_version target: writes the version header
# with the git commit of the source tree as it is now, touching the file only when that changed.
# Inputs: SOURCE_DIR, IN, OUT, VERSION, COMPILER.
set(EOMLAB_GIT_SHA "unknown")
find_package(Git QUIET)
if(GIT_FOUND)
  execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse HEAD
    WORKING_DIRECTORY ${SOURCE_DIR} OUTPUT_VARIABLE sha
    OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
  if(rc EQUAL 0)
    set(EOMLAB_GIT_SHA ${sha})
    execute_process(COMMAND ${GIT_EXECUTABLE} status --porcelain --untracked-files=no
      WORKING_DIRECTORY ${SOURCE_DIR} OUTPUT_VARIABLE dirty ERROR_QUIET)
    if(dirty)
      set(EOMLAB_GIT_SHA "${sha}-dirty")
    endif()
  endif()
endif()
set(PROJECT_VERSION ${VERSION})
set(EOMLAB_COMPILER ${COMPILER})
configure_file(${IN} ${OUT} @ONLY)
