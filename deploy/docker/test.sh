#!/usr/bin/env bash
# deploy/docker/test.sh checks the Dockerfile without a Docker engine (CI
# has none): it reads the Dockerfile and
#   1. checks its shape: the builder is golang at go.mod's Go version, the
#      final image distroless/static (or scratch), USER a numeric non-root
#      uid, EXPOSE the ports the image's CALCD_*_ADDR name, ENTRYPOINT the
#      binary the final stage copies in;
#   2. copies the build context .dockerignore admits (an allowlist) and runs
#      the builder's go build line there, as written (its --mount options
#      aside), writing the binary under a temporary directory instead of
#      /out;
#   3. checks the binary is static (file, ldd) and built with CGO_ENABLED=0
#      and -trimpath (go version -m);
#   4. runs it as uid 65532 (the image's USER) with the image's environment:
#      protected mode must refuse it (exit 2, nothing bound) since the image
#      listens on every interface without TLS; then, the addresses moved to
#      loopback, it must serve both transports and /readyz, and drain on
#      SIGTERM with exit 0.
# What it cannot check: the base images themselves, COPY and layer
# semantics, and the build under BuildKit. Run docker build . for those.
# CALC names a calc binary to use (else it builds one); CALCD_OUT, if set,
# receives the calcd it built.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
source scripts/lib.sh
say() { printf 'deploy/docker: %s\n' "$*" >&2; }
fail() {
  say "FAIL: $*"
  exit 1
}
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Parse the Dockerfile into shell assignments (values quoted by Python).
python3 - Dockerfile >"$work/dockerfile.sh" <<'EOF'
import json, re, shlex, sys
lines, cur = [], ""
for raw in open(sys.argv[1]):
    line = raw.rstrip("\n")
    if not cur and (not line.strip() or line.lstrip().startswith("#")):
        continue
    if line.endswith("\\"):
        cur += line[:-1] + " "
        continue
    lines.append(cur + line)
    cur = ""
stages, args = [], {}
for l in lines:
    op, _, rest = l.strip().partition(" ")
    op, rest = op.upper(), rest.strip()
    if op == "ARG" and not stages:
        k, _, v = rest.partition("=")
        args[k] = v
    elif op == "FROM":
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest.split()[0])
        name = rest.split()[2] if len(rest.split()) == 3 and rest.split()[1].upper() == "AS" else ""
        stages.append({"image": image, "name": name, "run": [], "env": {}, "expose": [], "user": "", "entrypoint": None, "copy": []})
    elif op == "RUN":
        words = rest.split(" ")
        while words and words[0].startswith("--mount="):
            words.pop(0)
        stages[-1]["run"].append(" ".join(words))
    elif op == "ENV":
        for kv in shlex.split(rest):
            k, _, v = kv.partition("=")
            stages[-1]["env"][k] = v
    elif op == "EXPOSE":
        stages[-1]["expose"] += rest.split()
    elif op == "USER":
        stages[-1]["user"] = rest
    elif op == "ENTRYPOINT":
        stages[-1]["entrypoint"] = json.loads(rest)
    elif op == "COPY":
        stages[-1]["copy"].append(rest.split())
build, final = stages[0], stages[-1]
builds = [r for r in build["run"] if " go build " in " " + r + " "]
assert len(builds) == 1, "want one go build line in the builder, got %r" % builds
out = {
    "go_version": args.get("GO_VERSION", ""),
    "build_image": build["image"], "build_name": build["name"], "build_cmd": builds[0],
    "final_image": final["image"], "user": final["user"],
    "entrypoint": " ".join(final["entrypoint"] or []),
    "expose": " ".join(final["expose"]),
    "env": " ".join("%s=%s" % kv for kv in final["env"].items()),
    "copies": ";".join(" ".join(c) for c in final["copy"]),
}
for k, v in out.items():
    print("df_%s=%s" % (k, shlex.quote(v)))
EOF
source "$work/dockerfile.sh"

# 1. Shape.
gomod=$(sed -n 's/^go \([0-9]*\.[0-9]*\).*/\1/p' go.mod)
[ "$df_go_version" = "$gomod" ] || fail "GO_VERSION $df_go_version, go.mod says go $gomod"
[[ $df_build_image == golang:"$gomod"* ]] || fail "builder image $df_build_image, want golang:$gomod"
[[ $df_final_image == gcr.io/distroless/static* || $df_final_image == scratch ]] || fail "final image $df_final_image, want distroless/static or scratch"
uid=${df_user%%:*}
[[ $uid =~ ^[0-9]+$ ]] && [ "$uid" -ne 0 ] || fail "USER $df_user: want a numeric non-root uid"
binary=${df_entrypoint%% *}
[[ $df_copies == *"--from=$df_build_name "*" $binary"* ]] || fail "ENTRYPOINT $binary is not what the final stage copies from $df_build_name: $df_copies"
ports=$(for kv in $df_env; do [[ $kv == CALCD_*_ADDR=* ]] && echo "${kv##*:}"; done | sort -n | xargs)
[ "$ports" = "$(xargs -n1 <<<"$df_expose" | sort -n | xargs)" ] || fail "EXPOSE $df_expose, the environment listens on $ports"
[[ $df_build_cmd == *CGO_ENABLED=0* && $df_build_cmd == *-trimpath* ]] || fail "the go build line lacks CGO_ENABLED=0 or -trimpath: $df_build_cmd"
say "ok: Dockerfile: $df_build_image -> $df_final_image, USER $df_user, EXPOSE $df_expose, ENTRYPOINT $df_entrypoint"

# 2. The build, in the context .dockerignore admits: "*" then "!path" lines.
[ "$(grep -v '^#' .dockerignore | grep -v '^$' | head -n 1)" = '*' ] || fail ".dockerignore must start with * (an allowlist)"
mkdir "$work/ctx" "$work/out"
for p in $(sed -n 's/^!//p' .dockerignore); do
  [ -e "$p" ] || fail ".dockerignore admits $p, which does not exist"
  cp -r --parents "$p" "$work/ctx/"
done
cmd=${df_build_cmd//\/out\//$work/out/}
say "building in the .dockerignore context: $cmd"
(cd "$work/ctx" && GOFLAGS=-mod=readonly bash -c "$cmd")
bin=$work/out/${binary##*/}

# 3. Static, CGO off, trimmed.
file "$bin" | grep -q 'statically linked' || fail "not static: $(file "$bin")"
if ldd "$bin" >"$work/ldd" 2>&1; then fail "ldd finds dynamic dependencies: $(cat "$work/ldd")"; fi
grep -q 'not a dynamic executable' "$work/ldd" || fail "ldd: $(cat "$work/ldd")"
go version -m "$bin" >"$work/buildinfo"
grep -q 'CGO_ENABLED=0' "$work/buildinfo" && grep -q -- '-trimpath=true' "$work/buildinfo" || fail "build settings: $(cat "$work/buildinfo")"
if grep -a -q "$work/ctx" "$bin"; then fail "the binary holds its build path: -trimpath did not apply"; fi
say "ok: $(file -b "$bin" | cut -d, -f1-2), statically linked, CGO_ENABLED=0, -trimpath ($(du -h "$bin" | cut -f1))"

# 4. Run it as the image's user, with the image's environment.
chmod 755 "$work" "$work/out"
as_user=()
if [ "$(id -u)" -eq 0 ]; then
  as_user=(setpriv --reuid="$uid" --regid="${df_user##*:}" --clear-groups)
else
  say "not root: running as uid $(id -u) instead of $uid"
fi
# run_image [VAR=VALUE]... execs the binary as the image would run it, in
# /: call it in a subshell or in the background, where the pid is then
# calcd's (env execs setpriv, which execs calcd).
run_image() {
  cd /
  exec env -i PATH=/usr/bin:/bin $df_env "$@" "${as_user[@]}" "$bin"
}
rc=0
(run_image) >"$work/protected.log" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "with the image's environment and no TLS, calcd exited $rc, want 2 (protected mode): $(cat "$work/protected.log")"
grep -q 'protected mode: refusing to listen on --tcp-addr :4000' "$work/protected.log" || fail "$(cat "$work/protected.log")"
say "ok: the image's defaults refuse plaintext on every interface: $(cut -c1-120 "$work/protected.log")..."

run_image CALCD_TCP_ADDR=127.0.0.1:0 CALCD_GRPC_ADDR=127.0.0.1:0 CALCD_ADMIN_ADDR=127.0.0.1:0 >"$work/calcd.log" 2>&1 &
pid=$!
tcp=$(listen_addr "$work/calcd.log" tcp)
grpc=$(listen_addr "$work/calcd.log" grpc)
admin=$(listen_addr "$work/calcd.log" admin)
user=$(ps -o uid= -p "$pid" | tr -d ' ')
[ "$(id -u)" -ne 0 ] || [ "$user" = "$uid" ] || fail "calcd runs as uid $user, want $uid"
calc=${CALC:-$work/calc}
[ -n "${CALC:-}" ] || (cd "$root" && go build -o "$calc" ./client/cmd/calc)
for t in "tcp $tcp" "grpc $grpc"; do
  set -- $t
  [ "$("$calc" --transport "$1" --addr "$2" health)" = SERVING ] || fail "health over $1"
  [ "$("$calc" --transport "$1" --addr "$2" '6 * 7')" = 42 ] || fail "a call over $1"
done
[ "$(curl -sf "http://$admin/readyz")" = ok ] || fail "/readyz"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || fail "calcd exited $rc after SIGTERM, want 0: $(tail -3 "$work/calcd.log")"
grep -q '"msg":"stopped"' "$work/calcd.log" || fail "no stopped record: $(tail -3 "$work/calcd.log")"
say "ok: as uid $user it serves raw TCP, gRPC and /readyz, and drains on SIGTERM with exit 0"
if [ -n "${CALCD_OUT:-}" ]; then
  cp "$bin" "$CALCD_OUT"
fi
echo "deploy/docker: 1 passed, 0 failed" >&2
