# Installed with ferry and included by find_package(ferry): builds a transport plugin out of tree.
#
#   find_package(ferry REQUIRED)
#   ferry_add_transport_plugin(dgram dgram_transport.cpp)
#
# makes the MODULE ferry_plugin_<name>.so (the file name the loader looks for), linked against
# the installed transport SDK, with FERRY_PLUGIN_VERSION set to the project's version, and
# installs it into <prefix>/<libdir>/ferry/plugins of this project. ferry finds plugins next to
# its own library and in the directories of FERRY_PLUGIN_PATH; FERRY_PLUGIN_DIR is the directory
# of this ferry's own plugins (install there to need no FERRY_PLUGIN_PATH).
function(ferry_add_transport_plugin name)
  if(NOT name MATCHES "^[a-z0-9_]+$")
    message(FATAL_ERROR "ferry_add_transport_plugin: '${name}' is not a transport name ([a-z0-9_]+)")
  endif()
  set(target ferry_plugin_${name})
  add_library(${target} MODULE ${ARGN})
  target_link_libraries(${target} PRIVATE ferry::transport_sdk)
  target_compile_features(${target} PRIVATE cxx_std_17)
  set(version "${PROJECT_VERSION}")
  if(NOT version)
    set(version "unknown")
  endif()
  target_compile_definitions(${target} PRIVATE FERRY_PLUGIN_VERSION="${version}")
  set_target_properties(${target} PROPERTIES PREFIX "" CXX_VISIBILITY_PRESET hidden)
  include(GNUInstallDirs)
  install(TARGETS ${target} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/ferry/plugins)
endfunction()
