# `cmake --install`: grace as two systemd services.
#
#   <prefix>/bin                       graced, grace-agent, gracectl
#   <prefix>/lib/systemd/system        graced.service, grace-agent.service (on systemd's unit path
#                                      for /usr and /usr/local alike)
#   <prefix>/share/grace/scenarios     the shipped online scenarios (config/scenarios)
#   <prefix>/share/grace/web           the web UI, when the grace_web target has staged it
#   <prefix>/share/grace/grafana       the Grafana dashboard; .../prometheus the alert rules
#   <prefix>/share/doc/grace           the docs (docs/*.md)
#   GRACE_INSTALL_SYSCONFDIR           graced.toml, agent.toml (an existing file is kept)
#   GRACE_INSTALL_STATEDIR             graced's state (grace.db) and the agent's outputs
#
# The config and state directories are absolute, outside the prefix, and honour DESTDIR. The
# units run both services as the dynamic user "grace" (see config/systemd/graced.service.in).
include(GNUInstallDirs)

set(GRACE_INSTALL_SYSCONFDIR "/etc/grace" CACHE PATH "Where graced.toml and agent.toml go")
set(GRACE_INSTALL_STATEDIR "/var/lib/grace" CACHE PATH
  "graced's state directory; systemd's StateDirectory=, so it must lie under /var/lib")
set(GRACE_INSTALL_SYSTEMDUNITDIR "lib/systemd/system" CACHE STRING
  "Where the systemd units go (relative: under the prefix)")

# StateDirectory= takes a path relative to /var/lib.
string(REGEX MATCH "^/var/lib/(.+)$" _grace_under_var_lib "${GRACE_INSTALL_STATEDIR}")
if(NOT _grace_under_var_lib)
  message(FATAL_ERROR "GRACE_INSTALL_STATEDIR=${GRACE_INSTALL_STATEDIR}: the units' "
    "StateDirectory= needs a directory under /var/lib")
endif()
set(GRACE_STATE_DIRECTORY "${CMAKE_MATCH_1}")

install(TARGETS graced grace-agent gracectl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

set(_grace_staged "${CMAKE_BINARY_DIR}/grace-install")
# The units and graced.toml name installed paths: they are written at install time, for the
# prefix of that install (`cmake --install --prefix P`, or cpack's /usr), not the configured one.
set(_grace_units_in "${CMAKE_SOURCE_DIR}/config/systemd")
# Staged per prefix, so that concurrent installs for two prefixes (install_test, deb_package_test)
# never copy each other's files.
install(CODE "
  string(MD5 at \"\${CMAKE_INSTALL_PREFIX}\")
  set(GRACE_STAGED_AT \"${_grace_staged}/at-\${at}\")
  set(CMAKE_INSTALL_FULL_BINDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\")
  set(GRACE_INSTALL_SYSCONFDIR \"${GRACE_INSTALL_SYSCONFDIR}\")
  set(GRACE_INSTALL_STATEDIR \"${GRACE_INSTALL_STATEDIR}\")
  set(GRACE_STATE_DIRECTORY \"${GRACE_STATE_DIRECTORY}\")
  set(GRACE_INSTALL_FULL_DOCDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_DOCDIR}\")
  foreach(unit graced.service grace-agent.service)
    configure_file(\"${_grace_units_in}/\${unit}.in\" \"\${GRACE_STAGED_AT}/\${unit}\" @ONLY)
  endforeach()
  file(INSTALL DESTINATION \"\${CMAKE_INSTALL_PREFIX}/${GRACE_INSTALL_SYSTEMDUNITDIR}\" TYPE FILE
    FILES \"\${GRACE_STAGED_AT}/graced.service\" \"\${GRACE_STAGED_AT}/grace-agent.service\")
  file(READ \"${_grace_staged}/graced.toml.in\" toml)
  string(REPLACE \"@GRACE_INSTALL_FULL_WEBDIR@\" \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_DATADIR}/grace/web\"
    toml \"\${toml}\")
  file(WRITE \"\${GRACE_STAGED_AT}/graced.toml\" \"\${toml}\")
  configure_file(\"${_grace_staged}/agent.toml\" \"\${GRACE_STAGED_AT}/agent.toml\" COPYONLY)
")

# graced.toml is the example with its state_dir and web_root lines set to the installed paths.
set(_grace_example "${CMAKE_SOURCE_DIR}/config/graced.example.toml")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${_grace_example}")
file(READ "${_grace_example}" _grace_toml)
function(_grace_set_toml_string key value)
  string(REGEX REPLACE "\n${key} = [^\n]*" "\n${key} = \"${value}\"" text "${_grace_toml}")
  if(NOT text MATCHES "\n${key} = \"")
    message(FATAL_ERROR "${_grace_example}: no '${key} = \"...\"' line to set for the install")
  endif()
  set(_grace_toml "${text}" PARENT_SCOPE)
endfunction()
_grace_set_toml_string(state_dir "${GRACE_INSTALL_STATEDIR}")
_grace_set_toml_string(web_root "@GRACE_INSTALL_FULL_WEBDIR@")  # set at install time, above
file(WRITE ${_grace_staged}/graced.toml.in "${_grace_toml}")
configure_file(config/agent.example.toml ${_grace_staged}/agent.toml COPYONLY)

# An operator's edited config survives a re-install: each is installed only where none is.
foreach(config graced.toml agent.toml)
  install(CODE "
    if(EXISTS \"\$ENV{DESTDIR}${GRACE_INSTALL_SYSCONFDIR}/${config}\")
      message(STATUS \"Keeping: \$ENV{DESTDIR}${GRACE_INSTALL_SYSCONFDIR}/${config}\")
    else()
      file(INSTALL DESTINATION \"${GRACE_INSTALL_SYSCONFDIR}\" TYPE FILE
        FILES \"\${GRACE_STAGED_AT}/${config}\")
    endif()")
endforeach()

# Empty: systemd hands it to the service user on first start (grace.db is created there).
install(DIRECTORY DESTINATION ${GRACE_INSTALL_STATEDIR})

install(DIRECTORY config/scenarios/ DESTINATION ${CMAKE_INSTALL_DATADIR}/grace/scenarios)
# The docs, which the units' Documentation= names.
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR} FILES_MATCHING PATTERN *.md)
# The Grafana dashboard and the Prometheus rules (docs/operations.md, "Metrics").
install(FILES config/grafana/grace-dashboard.json DESTINATION ${CMAKE_INSTALL_DATADIR}/grace/grafana)
install(FILES config/prometheus/grace-alerts.yml config/prometheus/grace-alerts.test.yml
  DESTINATION ${CMAKE_INSTALL_DATADIR}/grace/prometheus)
# Staged by the grace_web target (web/CMakeLists.txt); absent until it has run.
install(DIRECTORY "${CMAKE_BINARY_DIR}/web-ui/" DESTINATION ${CMAKE_INSTALL_DATADIR}/grace/web
  OPTIONAL PATTERN .staged EXCLUDE)
