# Warnings and sanitizers, per target and PRIVATE: nothing global.
function(ferry_target_defaults target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic)
  if(FERRY_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(FERRY_FUZZ)
    # Everything under test gets coverage instrumentation; only fuzz targets link the driver.
    target_compile_options(${target} PRIVATE -fsanitize=fuzzer-no-link,address,undefined)
  endif()
  if(FERRY_SANITIZER)
    target_compile_options(${target} PRIVATE -fsanitize=${FERRY_SANITIZER} -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=${FERRY_SANITIZER})
    # Undefined behaviour aborts the process, and so fails its test, whatever UBSAN_OPTIONS
    # says: by default UBSan prints a report and carries on, and the suite would pass.
    if(FERRY_SANITIZER MATCHES "undefined")
      target_compile_options(${target} PRIVATE -fno-sanitize-recover=undefined)
    endif()
  endif()
endfunction()

# ferry_add_plugin(NAME sources...): one MODULE per transport, named ferry_plugin_<name>.so,
# built into <build>/lib/ferry/plugins and installed into <libdir>/ferry/plugins.
function(ferry_add_plugin name)
  string(TOUPPER ${name} upper)
  option(FERRY_PLUGIN_${upper} "Build the ${name} transport plugin" ON)
  if(NOT FERRY_PLUGIN_${upper})
    return()
  endif()
  set(target ferry_plugin_${name})
  add_library(${target} MODULE ${ARGN})
  target_link_libraries(${target} PRIVATE ferry::transport_sdk Threads::Threads rt)
  target_compile_definitions(${target} PRIVATE FERRY_PLUGIN_VERSION="${PROJECT_VERSION}")
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    LIBRARY_OUTPUT_DIRECTORY ${FERRY_PLUGIN_BUILD_DIR})
  ferry_target_defaults(${target})
  install(TARGETS ${target} LIBRARY DESTINATION ${FERRY_PLUGIN_INSTALL_DIR})
  set_property(GLOBAL APPEND PROPERTY FERRY_PLUGINS ${target})
endfunction()
