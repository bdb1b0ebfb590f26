#!/usr/bin/env bash
# deb_package_test: `cpack -G DEB` of a build gives a Debian package that holds grace's
# binaries, units, default configs (as conffiles), scenarios, web UI, dashboard and alert rules
# at /usr and /etc paths, declares its shared-library dependencies, passes lintian but for the
# tags listed below (each with its reason), and runs from a scratch root it is unpacked into.
#
# Usage: deb_package_test.sh CPACK BUILD_DIR SOURCE_DIR VERSION
# Without cpack, dpkg-deb or dpkg-shlibdeps it exits 77 (skipped), or fails under CI=true;
# without lintian it skips that check (fails under CI=true).
set -euo pipefail
cpack=$1 build=$2 source=$3 version=$4

fail() {
  echo "deb_package_test: FAIL: $*" >&2
  exit 1
}
skip() {
  [[ ${CI:-} == true ]] && fail "$*"
  echo "deb_package_test: SKIP: $*"
  exit 77
}
for tool in "$cpack" dpkg-deb dpkg-shlibdeps; do
  command -v "$tool" >/dev/null || skip "$tool not found (apt-get install cmake dpkg-dev)"
done
[[ -f $build/web-ui/index.html ]] || fail "the web UI is not staged in $build/web-ui (build grace_web)"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# -B: the package and cpack's staging go to the scratch directory, not the build tree.
(cd "$build" && "$cpack" -G DEB -B "$scratch/out") >"$scratch/cpack.log" 2>&1 ||
  { cat "$scratch/cpack.log"; fail "cpack -G DEB"; }
arch=$(dpkg --print-architecture)
deb=$scratch/out/grace_${version}_${arch}.deb
[[ -f $deb ]] || { ls "$scratch/out"; fail "no grace_${version}_${arch}.deb"; }

# --- Control fields ---------------------------------------------------------------------------
field() { dpkg-deb -f "$deb" "$1"; }
[[ $(field Package) == grace ]] || fail "Package: $(field Package)"
[[ $(field Version) == "$version" ]] || fail "Version: $(field Version), not $version"
[[ $(field Architecture) == "$arch" ]] || fail "Architecture: $(field Architecture)"
[[ -n $(field Maintainer) ]] || fail "no Maintainer"
[[ $(field Description) == *"Mixture-of-Experts"* ]] || fail "Description: $(field Description)"
depends=$(field Depends)
# From dpkg-shlibdeps: the libraries graced, grace-agent and gracectl link.
for lib in libc6 libstdc++6 libsqlite3-0 libsystemd0 libssl3 libcpp-httplib; do
  [[ $depends == *"$lib"* ]] || fail "Depends lacks $lib: $depends"
done
[[ $(field Recommends) == *systemd* ]] || fail "Recommends: $(field Recommends)"
dpkg-deb -I "$deb" conffiles >"$scratch/conffiles" || fail "no conffiles in the control archive"
for c in /etc/grace/graced.toml /etc/grace/agent.toml; do
  grep -qx "$c" "$scratch/conffiles" || fail "$c is not a conffile"
done

# --- Contents ---------------------------------------------------------------------------------
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$scratch/contents"
for f in /usr/bin/graced /usr/bin/grace-agent /usr/bin/gracectl \
  /usr/lib/systemd/system/graced.service /usr/lib/systemd/system/grace-agent.service \
  /etc/grace/graced.toml /etc/grace/agent.toml \
  /usr/share/grace/web/index.html /usr/share/doc/grace/operations.md \
  /usr/share/grace/grafana/grace-dashboard.json /usr/share/grace/prometheus/grace-alerts.yml \
  /usr/share/doc/grace/copyright /usr/share/doc/grace/changelog.gz; do
  grep -qx "$f" "$scratch/contents" || fail "$f is not in the package"
done
for s in "$source"/config/scenarios/*.toml; do
  grep -qx "/usr/share/grace/scenarios/$(basename "$s")" "$scratch/contents" ||
    fail "scenario $(basename "$s") is not in the package"
done
# The web UI as grace_web staged it, file for file.
(cd "$build/web-ui" && find . -type f ! -name .staged | sed 's|^\.|/usr/share/grace/web|' | sort) \
  >"$scratch/staged-web"
grep '^/usr/share/grace/web/.*[^/]$' "$scratch/contents" | sort >"$scratch/packaged-web"
cmp -s "$scratch/staged-web" "$scratch/packaged-web" ||
  fail "the packaged web UI differs from $build/web-ui: $(diff "$scratch/staged-web" "$scratch/packaged-web" | head -5)"
! grep -q '^/var/lib/grace' "$scratch/contents" || fail "/var/lib/grace is in the package (systemd makes it)"
! grep -q '^/usr/local' "$scratch/contents" || fail "files under /usr/local"
! grep -q '\.staged$' "$scratch/contents" || fail "grace_web's .staged stamp is in the package"

# --- lintian ----------------------------------------------------------------------------------
# The tags that remain, and why (anything else fails the test):
#   no-manual-page (W)                 the three binaries have --help, no man pages yet
#   hardening-no-bindnow (I), hardening-no-fortify-functions (I): the project's build flags
#                                      have no -Wl,-z,now and no -D_FORTIFY_SOURCE
#   package-contains-documentation-outside-usr-share-doc (I): the UI's index.html and the
#                                      held-out scenarios' README.md are data, not docs
#   package-supports-alternative-init-but-no-init.d-script (I): systemd units only
#   spelling-error-in-binary (I)       "nam": a fragment of a longer string in gracectl
#   package-contains-empty-directory (I): web/vendor when npm ci has not fetched the charts
allowed_tags=(
  no-manual-page
  hardening-no-bindnow
  hardening-no-fortify-functions
  package-contains-documentation-outside-usr-share-doc
  package-supports-alternative-init-but-no-init.d-script
  spelling-error-in-binary
  package-contains-empty-directory
)
if command -v lintian >/dev/null; then
  # Without --allow-root lintian refuses to run as root.
  lintian --allow-root --tag-display-limit 0 --display-info "$deb" >"$scratch/lintian.log" 2>&1 || true
  unexpected=$(grep -E '^[EWI]: ' "$scratch/lintian.log" | awk '{print $3}' | sort -u |
    grep -vxF -f <(printf '%s\n' "${allowed_tags[@]}") || true)
  [[ -z $unexpected ]] || { cat "$scratch/lintian.log"; fail "lintian tags: $unexpected"; }
  echo "deb_package_test: lintian tags left: $(grep -E '^[EWI]: ' "$scratch/lintian.log" | awk '{print $3}' | sort -u | tr '\n' ' ')"
else
  [[ ${CI:-} == true ]] && fail "lintian not found (apt-get install lintian)"
  echo "deb_package_test: lintian not found: its check skipped (apt-get install lintian)"
fi

# --- Unpacked into a scratch root -------------------------------------------------------------
root=$scratch/root
dpkg-deb -x "$deb" "$root"
out=$("$root/usr/bin/gracectl" --version) || fail "the packaged gracectl --version"
[[ $out == "gracectl $version" ]] || fail "gracectl --version says '$out'"
out=$("$root/usr/bin/graced" --version) || fail "the packaged graced --version"
[[ $out == "graced $version" ]] || fail "graced --version says '$out'"
grep -qx 'ExecStart=/usr/bin/graced --config /etc/grace/graced.toml' \
  "$root/usr/lib/systemd/system/graced.service" || fail "graced.service does not run /usr/bin/graced"
grep -q '^ExecStart=/usr/bin/grace-agent ' "$root/usr/lib/systemd/system/grace-agent.service" ||
  fail "grace-agent.service does not run /usr/bin/grace-agent"
grep -qx 'web_root = "/usr/share/grace/web"' "$root/etc/grace/graced.toml" ||
  fail "the packaged graced.toml does not serve /usr/share/grace/web"
# The packaged graced starts on the packaged config (its state, ports and web_root moved into
# the scratch root) and serves the packaged UI.
sed "s|^web_root = .*|web_root = \"$root/usr/share/grace/web\"|" "$root/etc/grace/graced.toml" \
  >"$scratch/graced.toml"
read -r http agents <<<"$(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')"
GRACE_CLUSTER_SECRET=deb-test "$root/usr/bin/graced" --config "$scratch/graced.toml" \
  --state-dir "$scratch/state" --http "127.0.0.1:$http" --agents "127.0.0.1:$agents" \
  >"$scratch/graced.log" 2>&1 &
graced_pid=$!
page=""
for _ in $(seq 1 100); do
  page=$(python3 -c "import urllib.request
print(urllib.request.urlopen('http://127.0.0.1:$http/', timeout=1).read().decode())" 2>/dev/null) && break
  sleep 0.1
done
kill "$graced_pid" 2>/dev/null || true
wait "$graced_pid" 2>/dev/null || true
cmp -s <(printf '%s\n' "$page") "$root/usr/share/grace/web/index.html" ||
  { cat "$scratch/graced.log"; fail "the packaged graced did not serve the packaged UI's index.html"; }
echo "deb_package_test: OK ($(basename "$deb"), $(wc -l <"$scratch/contents") entries)"
