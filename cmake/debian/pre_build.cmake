# CPACK_PRE_BUILD_SCRIPTS of cmake/GracePackage.cmake: runs on the staged tree before cpack
# packs it. The variables come from the generated CPack project config file.
set(root "${CPACK_TEMPORARY_INSTALL_DIRECTORY}")
if(NOT IS_DIRECTORY "${root}/etc")  # where cpack staged with DESTDIR
  message(FATAL_ERROR "grace package: no etc/ under the staging directory ${root}")
endif()
# systemd creates the state directory for the DynamicUser (as /var/lib/private/...).
file(REMOVE_RECURSE "${root}${GRACE_PACKAGE_STATEDIR}")
file(GLOB var_left LIST_DIRECTORIES true "${root}/var/lib/*")
if(NOT var_left)
  file(REMOVE_RECURSE "${root}/var")
endif()
# Stripped as dh_strip does: debug symbols and the .comment and .note sections go.
file(GLOB binaries "${root}${GRACE_PACKAGE_BINDIR}/*")
foreach(binary ${binaries})
  execute_process(COMMAND "${GRACE_PACKAGE_STRIP}" --remove-section=.comment
    --remove-section=.note --strip-unneeded "${binary}" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "grace package: ${GRACE_PACKAGE_STRIP} ${binary} failed")
  endif()
endforeach()
set(doc "${root}${GRACE_PACKAGE_DOCDIR}")
file(MAKE_DIRECTORY "${doc}")
file(COPY "${GRACE_PACKAGE_DEBIAN_DIR}/copyright" DESTINATION "${doc}")
file(READ "${GRACE_PACKAGE_DEBIAN_DIR}/changelog" text)
file(WRITE "${doc}/changelog" "${text}")
execute_process(COMMAND gzip -9nf "${doc}/changelog" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "grace package: gzip ${doc}/changelog failed")
endif()
