#!/usr/bin/env bash
# install_test: `cmake --install` of a build into a scratch DESTDIR gives services systemd accepts
# and that start on their installed configs:
#   1. the binaries, configs, state directory and scenarios land where the installed units
#      expect them (ExecStart's binary, its --config file, StateDirectory=, WorkingDirectory=),
#      the installed graced.toml points at that state directory and the installed web UI, which
#      holds the UI grace_web staged (when it has run);
#   2. `systemd-analyze verify` says nothing about either unit (a misspelled key in a copy must
#      be reported, so the check cannot pass vacuously);
#   3. the installed graced, on the installed graced.toml with its state and ports moved into the
#      scratch directory, sends READY=1 to $NOTIFY_SOCKET, and on SIGTERM sends STOPPING=1 and
#      exits 0; the installed grace-agent sends READY=1 and STOPPING=1 around a one-rank replay.
#
# Usage: install_test.sh CMAKE BUILD_DIR SOURCE_DIR FULL_BINDIR FULL_DATADIR
# Without systemd-analyze it exits 77 (skipped), or fails under CI=true.
set -euo pipefail
cmake=$1 build=$2 source=$3 bindir=$4 datadir=$5

fail() {
  echo "install_test: FAIL: $*" >&2
  exit 1
}
if ! command -v systemd-analyze >/dev/null; then
  [[ ${CI:-} == true ]] && fail "systemd-analyze not found (apt-get install systemd)"
  echo "install_test: SKIP: systemd-analyze not found (apt-get install systemd)"
  exit 77
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
root=$scratch/root
DESTDIR=$root "$cmake" --install "$build" >"$scratch/install.log" 2>&1 ||
  { cat "$scratch/install.log"; fail "cmake --install $build"; }

# The value of KEY= in a unit file (the last one, as systemd reads it).
unit_value() { sed -n "s/^$2=//p" "$1" | tail -n 1; }

# --- 1. Layout -------------------------------------------------------------------------------
for b in graced grace-agent gracectl; do
  [[ -x $root$bindir/$b ]] || fail "$bindir/$b not installed"
done
unit_dir=$(dirname "$(find "$root" -path '*/systemd/system/graced.service' | head -n 1)")
[[ $unit_dir != . ]] || fail "no graced.service installed under a systemd/system directory"
state_dir=""
for name in graced grace-agent; do
  unit=$unit_dir/$name.service
  [[ -f $unit ]] || fail "${unit#"$root"} not installed"
  read -r binary flag config <<<"$(unit_value "$unit" ExecStart)"
  [[ $binary == "$bindir/$name" ]] || fail "$name.service runs $binary, not $bindir/$name"
  [[ -x $root$binary ]] || fail "$name.service: ExecStart $binary is not installed"
  [[ $flag == --config && -f $root$config ]] || fail "$name.service: --config $config is not installed"
  env_file=$(unit_value "$unit" EnvironmentFile)
  [[ ${env_file#-} == "$(dirname "$config")/grace.env" ]] ||
    fail "$name.service: EnvironmentFile=$env_file is not next to $config"
  read -r state _ <<<"$(unit_value "$unit" StateDirectory)"
  [[ -z $state_dir || $state_dir == "/var/lib/$state" ]] || fail "the units' state directories differ"
  state_dir=/var/lib/$state
  [[ -d $root$state_dir ]] || fail "$name.service: state directory $state_dir is not installed"
done
[[ -z $(ls -A "$root$state_dir") ]] || fail "$state_dir is not empty after install"
work_dir=$(unit_value "$unit_dir/grace-agent.service" WorkingDirectory)
[[ $work_dir == "$state_dir"/* ]] || fail "grace-agent.service works in $work_dir, outside $state_dir"
conf_dir=$(dirname "$config")
grep -qx "state_dir = \"$state_dir\"" "$root$conf_dir/graced.toml" ||
  fail "$conf_dir/graced.toml does not set state_dir = \"$state_dir\""
grep -qx "web_root = \"$datadir/grace/web\"" "$root$conf_dir/graced.toml" ||
  fail "$conf_dir/graced.toml does not set web_root = \"$datadir/grace/web\""
for s in "$source"/config/scenarios/*.toml; do
  cmp -s "$s" "$root$datadir/grace/scenarios/$(basename "$s")" ||
    fail "scenario $(basename "$s") is not installed in $datadir/grace/scenarios"
done

if [[ -f $build/web-ui/index.html ]]; then  # staged by grace_web (web/CMakeLists.txt)
  [[ -f $root$datadir/grace/web/index.html ]] || fail "the staged web UI is not in $datadir/grace/web"
  [[ ! -e $root$datadir/grace/web/.staged ]] || fail "grace_web's .staged stamp was installed"
fi

# A second install keeps an edited config.
echo "# edited" >>"$root$conf_dir/agent.toml"
DESTDIR=$root "$cmake" --install "$build" >"$scratch/install.log" 2>&1 ||
  { cat "$scratch/install.log"; fail "second cmake --install $build"; }
[[ $(tail -n 1 "$root$conf_dir/agent.toml") == "# edited" ]] || fail "reinstall overwrote agent.toml"

# --- 2. systemd-analyze verify ---------------------------------------------------------------
# --root= would need a whole systemd tree under DESTDIR (it stops at "Unit sysinit.target not
# found"), so each unit is verified from a copy whose ExecStart= is the DESTDIR binary (verify
# checks it is executable). Warnings do not change verify's exit status: any line naming the
# unit fails the test.
mkdir "$scratch/verify"
verify() {  # verify UNIT_FILE: prints what systemd-analyze says about it
  local name
  name=$(basename "$1")
  (systemd-analyze verify "$1" 2>&1 || echo "exit status $?") |
    grep -F -e "$1" -e "$name" -e "exit status" || true
}
for name in graced grace-agent; do
  sed "s|^ExecStart=/|ExecStart=$root/|" "$unit_dir/$name.service" >"$scratch/verify/$name.service"
  complaints=$(verify "$scratch/verify/$name.service")
  [[ -z $complaints ]] || fail "systemd-analyze verify $name.service:"$'\n'"$complaints"
done
sed 's/^ProtectHome=/ProtectHomme=/' "$scratch/verify/graced.service" >"$scratch/verify/misspelled.service"
[[ $(verify "$scratch/verify/misspelled.service") == *ProtectHomme* ]] ||
  fail "systemd-analyze verify does not report a misspelled key; the check above proves nothing"

# --- 3. The installed binaries start under a notify socket -----------------------------------
# run_notified MODE LOG COMMAND...: runs COMMAND with $NOTIFY_SOCKET set and checks it sends
# READY=1, then (MODE term: after a SIGTERM; MODE exit: by itself) STOPPING=1, and exits 0.
run_notified() {
  python3 - "$scratch/notify.sock" "$@" <<'PY'
import os, select, signal, socket, subprocess, sys, time

sock_path, mode, log_path, *cmd = sys.argv[1:]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(sock_path)
with open(log_path, "w") as log:
    proc = subprocess.Popen(cmd, env=dict(os.environ, NOTIFY_SOCKET=sock_path), stdout=log,
                            stderr=subprocess.STDOUT)

def expect(state, deadline_s=60):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if select.select([sock], [], [], 0.2)[0]:
            if state in sock.recv(4096).decode().split("\n"):
                return
        elif proc.poll() is not None and not select.select([sock], [], [], 0)[0]:
            sys.exit(f"{cmd[0]} exited with {proc.returncode} before sending {state}")
    proc.kill()
    sys.exit(f"{cmd[0]} sent no {state} within {deadline_s} s")

expect("READY=1")
if mode == "term":
    proc.send_signal(signal.SIGTERM)
expect("STOPPING=1")
if proc.wait(timeout=60) != 0:
    sys.exit(f"{cmd[0]} exited with {proc.returncode}")
PY
  local rc=$?
  rm -f "$scratch/notify.sock"
  return $rc
}

mkdir "$scratch/state"
GRACE_CLUSTER_SECRET=install-test run_notified term "$scratch/graced.log" \
  "$root$bindir/graced" --config "$root$conf_dir/graced.toml" --state-dir "$scratch/state" \
  --http 127.0.0.1:0 --agents 127.0.0.1:0 ||
  { cat "$scratch/graced.log"; fail "the installed graced on the installed graced.toml"; }
[[ -f $scratch/state/grace.db ]] || fail "graced wrote no $scratch/state/grace.db"

mkdir "$scratch/agent"
cat >"$scratch/agent.toml" <<TOML
[cluster]
nodes = 1
ranks_per_node = 1
slots_per_rank = 4
[transport]
rendezvous = "127.0.0.1:0"
[model]
experts = 4
top_k = 2
hidden = 16
ffn = 8
[output]
dir = "$scratch/agent"
TOML
run_notified exit "$scratch/agent.log" "$root$bindir/grace-agent" --config "$scratch/agent.toml" ||
  { cat "$scratch/agent.log"; fail "the installed grace-agent"; }

echo "install_test: OK (units in ${unit_dir#"$root"}, configs in $conf_dir, state in $state_dir)"
