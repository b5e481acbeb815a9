# Compatibility with the ROS 2 wheels from PyPI (used when the workspace is built into a
# Python virtual environment instead of a sourced /opt/ros install).
#
# The wheels' exported CMake targets carry the include directories of the machine that built
# them (/opt/python/...). Those folders do not exist here, so the generated Python type support
# fails to compile. unihm_fix_wheel_python_includes() drops them from every imported target of
# the calling directory and adds this interpreter's Python and NumPy headers instead. On a real
# ROS install no such entry exists and the function changes nothing.

function(unihm_fix_wheel_python_includes)
  get_property(_targets DIRECTORY PROPERTY IMPORTED_TARGETS)
  set(_patched 0)
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_kept "")
    set(_dropped FALSE)
    foreach(_dir IN LISTS _dirs)
      if(_dir MATCHES "^/opt/python/")
        set(_dropped TRUE)
      else()
        list(APPEND _kept "${_dir}")
      endif()
    endforeach()
    if(_dropped)
      if(NOT Python3_NumPy_INCLUDE_DIRS)
        find_package(Python3 REQUIRED COMPONENTS Interpreter Development NumPy)
      endif()
      list(APPEND _kept ${Python3_INCLUDE_DIRS} ${Python3_NumPy_INCLUDE_DIRS})
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_kept}")
      math(EXPR _patched "${_patched} + 1")
    endif()
  endforeach()
  if(_patched GREATER 0)
    message(STATUS "ROS wheel compatibility: fixed Python include dirs of ${_patched} imported targets")
  endif()
endfunction()
