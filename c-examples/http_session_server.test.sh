#!/bin/sh
# Fail-over test of http_session_server (run by `make c-examples-test`):
# three instances on 127.0.0.1 form one session-store cluster (multicast on
# 127.0.0.1, TTL 1, a group, port and domain of this run only). curl counts
# a session up on one instance, which is the session's primary; that
# instance is SIGKILLed; the session, with its last acknowledged count, is
# then served by the other two, and counting continues from there. Then b
# drains (GET /drain) and keeps serving: a request for the session there is
# a 307 redirect to c's URL, taken from c's memberPayload, and curl -L
# continues counting on c.
#
# Usage: http_session_server.test.sh <path to http_session_server>
set -eu
server=$1
dir=$(mktemp -d)
pids=""
cleanup() {
    for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    for f in "$dir"/*.log; do echo "--- $f" >&2; cat "$f" >&2; done
    exit 1
}

run=$$
settings="membershipType=multicast mcastAddr=239.254.$((run % 250)).$((run / 250 % 250 + 1))
 mcastPort=$((21000 + run % 20000)) mcastBindAddress=127.0.0.1 mcastTTL=1
 mcastFrequency=100 mcastDropTime=1500 domain=http-failover-$run
 tcpListenAddress=127.0.0.1 tcpListenPort=0 lifetime=180 memberPayload=auto"

start() { # name -> starts an instance, records its pid
    # shellcheck disable=SC2086
    "$server" 0 $settings > "$dir/$1.log" 2>&1 &
    pids="$pids $!"
    eval "pid_$1=$!"
}

# The HTTP port an instance printed on its ready line (waits up to 60 s).
port_of() {
    i=0
    while [ $i -lt 600 ]; do
        line=$(grep -m1 'ready$' "$dir/$1.log" 2>/dev/null || true)
        if [ -n "$line" ]; then
            echo "$line" | sed 's/.*http 127.0.0.1:\([0-9]*\),.*/\1/'
            return 0
        fi
        i=$((i + 1)); sleep 0.1
    done
    fail "$1 never became ready"
}

# Waits (up to 30 s) until the instance on port $1 sees $2 store members.
wait_members() {
    i=0
    while [ $i -lt 300 ]; do
        n=$(curl -s -m 5 "http://127.0.0.1:$1/members" || true)
        [ "$n" = "$2" ] && return 0
        i=$((i + 1)); sleep 0.1
    done
    fail "instance on port $1 sees '$n' members, expected $2"
}

# One request with the cookie jar; prints the body, fails on non-200.
hit() {
    body=$(curl -s -m 30 -f -b "$dir/jar" -c "$dir/jar" "http://127.0.0.1:$1/") \
        || fail "request to port $1 failed"
    echo "$body"
}

field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

start a; start b; start c
pa=$(port_of a); pb=$(port_of b); pc=$(port_of c)
echo "instances: a=:$pa b=:$pb c=:$pc"
for p in $pa $pb $pc; do wait_members "$p" 2; done

want=1
while [ $want -le 5 ]; do
    body=$(hit "$pa")
    echo "  a: $body"
    [ "$(field "$body" counter)" = "$want" ] || fail "expected counter=$want from a, got: $body"
    [ "$(field "$body" copies)" = "2" ] || fail "expected 2 acknowledged copies, got: $body"
    want=$((want + 1))
done
node_a=$(field "$body" node)
session=$(field "$body" session)
grep -q "SRSESSION.*$session" "$dir/jar" || fail "cookie jar does not hold session $session"

echo "SIGKILL a (pid $pid_a, store $node_a, primary of session $session)"
kill -9 "$pid_a"
wait "$pid_a" 2>/dev/null || true
wait_members "$pb" 1
wait_members "$pc" 1

body=$(hit "$pb")
echo "  b: $body"
[ "$(field "$body" counter)" = "6" ] || fail "b did not continue from 5: $body"
[ "$(field "$body" session)" = "$session" ] || fail "b served another session: $body"
[ "$(field "$body" node)" != "$node_a" ] || fail "answered by the killed node: $body"
body=$(hit "$pc")
echo "  c: $body"
[ "$(field "$body" counter)" = "7" ] || fail "c did not continue from 6: $body"
body=$(hit "$pb")
echo "  b: $body"
[ "$(field "$body" counter)" = "8" ] || fail "b did not see c's commit: $body"

drained=$(curl -s -m 60 "http://127.0.0.1:$pb/drain" || true)
[ "$drained" = "drained" ] || fail "b did not drain: $drained"
code=$(curl -s -m 30 -o "$dir/moved" -w '%{http_code} %{redirect_url}' -b "$dir/jar" \
    "http://127.0.0.1:$pb/") || fail "request to drained b failed"
echo "  b (drained): $code"
[ "$code" = "307 http://127.0.0.1:$pc/" ] || fail "expected a redirect to c, got: $code $(cat "$dir/moved")"
body=$(curl -s -m 30 -f -L -b "$dir/jar" -c "$dir/jar" "http://127.0.0.1:$pb/") \
    || fail "redirected request failed"
echo "  b -> c: $body"
[ "$(field "$body" counter)" = "9" ] || fail "c did not continue from 8 after the redirect: $body"
[ "$(field "$body" session)" = "$session" ] || fail "redirect served another session: $body"

kill -TERM "$pid_b" "$pid_c"
wait "$pid_b" || fail "b exited with $?"
wait "$pid_c" || fail "c exited with $?"
grep -q drained "$dir/b.log" || fail "b did not drain"
pids=""
echo "http_session_server fail-over: OK"
