# `cpack -G DEB` in the build directory: grace_<version>_<arch>.deb, what `cmake --install`
# installs (cmake/GraceInstall.cmake) under the prefix /usr:
#
#   /usr/bin                         graced, grace-agent, gracectl (stripped as Debian does)
#   /usr/lib/systemd/system          graced.service, grace-agent.service (not enabled)
#   /etc/grace                       graced.toml, agent.toml (conffiles)
#   /usr/share/grace                 scenarios, web UI, Grafana dashboard, Prometheus rules
#   /usr/share/doc/grace             the docs (docs/*.md), copyright, changelog.gz
#
# /var/lib/grace is not in the package: systemd creates it (StateDirectory=, DynamicUser=).
# The dependencies come from dpkg-shlibdeps. Build everything first (the web UI included):
# cpack installs the build as it is. tests/install/deb_package_test.sh checks the result.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME grace)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "grace maintainers <grace-maintainers@users.noreply.github.com>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "control plane for Mixture-of-Experts expert placement")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
  "grace places and replicates the experts of a Mixture-of-Experts model across\n"
  "GPUs from the load it measures, and migrates them while the model serves.\n"
  "This package holds the control-plane daemon graced with its web UI, the node\n"
  "agent grace-agent, the gracectl command line, their systemd units and default\n"
  "configurations, and a Grafana dashboard and Prometheus alert rules for\n"
  "graced's metrics.")
string(REPLACE ";" "" CPACK_DEBIAN_PACKAGE_DESCRIPTION "${CPACK_DEBIAN_PACKAGE_DESCRIPTION}")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS systemd)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_INSTALL_PREFIX /usr)  # what the install script sees as its prefix under DESTDIR
# /etc/grace and /var/lib/grace are absolute install destinations: they need DESTDIR staging.
set(CPACK_SET_DESTDIR ON)
# Stripped by debian/pre_build.cmake: cpack's own strip keeps .comment and .note sections.
set(CPACK_STRIP_FILES OFF)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS OFF)
configure_file(${CMAKE_CURRENT_LIST_DIR}/debian/conffiles.in ${CMAKE_BINARY_DIR}/grace-package/conffiles @ONLY)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${CMAKE_BINARY_DIR}/grace-package/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# After cpack staged the install, before it packs: drop the state directory, add the docs.
set(CPACK_PRE_BUILD_SCRIPTS ${CMAKE_CURRENT_LIST_DIR}/debian/pre_build.cmake)
set(CPACK_PROJECT_CONFIG_FILE ${CMAKE_BINARY_DIR}/grace-package/project_config.cmake)
file(WRITE ${CMAKE_BINARY_DIR}/grace-package/project_config.cmake
  "set(GRACE_PACKAGE_STATEDIR \"${GRACE_INSTALL_STATEDIR}\")\n"
  "set(GRACE_PACKAGE_DEBIAN_DIR \"${CMAKE_CURRENT_LIST_DIR}/debian\")\n"
  "set(GRACE_PACKAGE_DOCDIR \"${CPACK_PACKAGING_INSTALL_PREFIX}/share/doc/grace\")\n"
  "set(GRACE_PACKAGE_BINDIR \"${CPACK_PACKAGING_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\")\n"
  "set(GRACE_PACKAGE_STRIP \"${CMAKE_STRIP}\")\n")
include(CPack)
