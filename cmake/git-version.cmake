# Writes OUT (a header defining QATPLAN_GIT) from `git describe`, at every build, but touches
# the file only when the text changes, so run records name the commit the binary was built
# from without recompiling anything when it did not change.
execute_process(COMMAND git describe --always --dirty --tags
                WORKING_DIRECTORY ${SRC}
                OUTPUT_VARIABLE git OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT git)
  set(git "unknown")
endif()
set(text "#define QATPLAN_GIT \"${git}\"\n")
set(old "")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT old STREQUAL text)
  file(WRITE ${OUT} "${text}")
endif()
